"""Copy one bot's data between two databases (``bot db copy``) and bring a database
to the current schema (``bot db migrate``).

Either side may be SQLite or PostgreSQL. What is copied: the core's tables (plugin
switches, provider choices, settings, history, replies in flight, ``plugin_schema``)
and every table of each plugin recorded in ``plugin_schema`` (tables named
``<plugin_id>_...``). What is not: derived indexes (SQLite FTS virtual tables and
their shadow tables, PostgreSQL ``tsvector`` and generated columns: the target's own
migrations and triggers rebuild them as the rows arrive) and ``runtime_status``
(what running processes report about themselves; each rewrites its own).

How:

- Both databases are brought to the current schema first: the core's migrations (as
  opening a :class:`Database` does) and the installed plugins' migrations, in each
  one's dialect. A plugin recorded in the source that is not installed here is
  refused (its tables cannot be created in the target without its migrations)
  unless it is named in ``skip_plugins``: then its tables and its ``plugin_schema``
  row stay behind.
- Columns are copied by name: the target's other columns take their defaults; a
  source column the target lacks is an error, never silently dropped.
- The source is read in primary-key order, ``batch_rows`` rows at a time (never a
  whole table in memory); each batch is inserted in one transaction with
  ``ON CONFLICT DO NOTHING``, so a re-run (or a run after an interrupted one) leaves
  the rows already there alone and copies only the rest. History keeps its ids; a
  PostgreSQL target's sequences are moved past the highest id copied.
- After each batch the target's rows with the batch's keys are read back. Per table
  the report has the rows in the source, copied, already there, found in the target,
  and an order-independent checksum of each side (see :func:`row_hash`): equal
  checksums mean every source row is in the target, unchanged.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from hark.plugin import MigrationStep
from hark.store.database import Database
from hark.store.errors import DatabaseError, DatabaseUnavailable
from hark.store.plugin_db import PluginMigrationError, apply_plugin_migrations
from hark.store.sqlite import SQLiteDatabase

SQLITE, POSTGRESQL = "sqlite", "postgresql"

#: Rows read from the source (and inserted into the target) at a time.
BATCH_ROWS = 2000
# Bound parameters per statement: under SQLite's 32766 and asyncpg's 32767.
MAX_PARAMS = 30_000

#: The core's tables that hold a bot's data, in the order they are copied.
CORE_TABLES = (
    "plugin_state",
    "provider_choice",
    "settings",
    "history",
    "inflight_reply",
    "plugin_schema",
)
# Core tables deliberately left behind, and why (the report lists them).
LEFT_BEHIND = {
    "runtime_status": "what running processes report about themselves; each rewrites its own",
}
# Bookkeeping of the databases themselves, never copied nor listed.
_INTERNAL = {"schema_version"}
# SQLite's shadow tables of a virtual table ``V`` are ``V_<suffix>`` (FTS3/4/5, R*Tree);
# used only where ``pragma_table_list`` cannot say (SQLite before 3.37).
_SHADOW_SUFFIXES = {
    "data", "idx", "content", "docsize", "config", "segments", "segdir", "stat",
    "node", "rowid", "parent",
}  # fmt: skip
_PG_INTEGERS = {"bigint", "integer", "smallint"}
_PG_FLOATS = {"double precision", "real"}


class CopyError(Exception):
    """The copy cannot be done as asked. The message is one line for the operator;
    ``usage`` tells a mistake in what was asked (exit 2) from a failure (exit 1)."""

    def __init__(self, message: str, *, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


# -- reports ---------------------------------------------------------------------


@dataclass
class MigrationReport:
    """What :func:`migrate` applied to one database."""

    database: str  # its display_url (no password)
    core: tuple[int, int] = (0, 0)  # core schema version before, after
    plugins: dict[str, tuple[int, int]] = field(default_factory=dict)  # id -> before, after

    @property
    def applied(self) -> bool:
        return self.core[0] != self.core[1] or any(a != b for a, b in self.plugins.values())

    def lines(self) -> list[str]:
        """What was applied, one line per part (for ``bot db migrate``)."""
        lines = [_migration_line("core", *self.core)]
        lines += [_migration_line(p, *v) for p, v in sorted(self.plugins.items())]
        return lines


def _migration_line(name: str, before: int, after: int) -> str:
    if before == after:
        return f"{name}: up to date (migration {after})" if after else f"{name}: no migrations"
    which = f"migration {after}" if after == before + 1 else f"migrations {before + 1}-{after}"
    return f"{name}: applied {which}"


@dataclass
class TableCopy:
    """One table's copy: row counts and both sides' checksums."""

    table: str
    source: int = 0  # rows read from the source
    copied: int = 0  # inserted into the target
    already: int = 0  # left alone: their key was in the target already
    found: int = 0  # source rows present in the target afterwards (by key)
    source_checksum: str = ""
    target_checksum: str = ""
    note: str = ""

    @property
    def matches(self) -> bool:
        return self.source == self.found and self.source_checksum == self.target_checksum


@dataclass
class CopyReport:
    source: str  # display urls
    target: str
    migrated: MigrationReport
    tables: list[TableCopy] = field(default_factory=list)
    left_behind: list[tuple[str, str]] = field(default_factory=list)  # (table, why)

    @property
    def differences(self) -> list[TableCopy]:
        return [t for t in self.tables if not t.matches]

    @property
    def copied(self) -> int:
        return sum(t.copied for t in self.tables)


@dataclass(frozen=True, slots=True)
class Step:
    """Progress: ``done`` of ``rows`` rows of table ``index`` (of ``tables``);
    ``finished`` is set on the table's last call."""

    table: str
    index: int
    tables: int
    done: int
    rows: int
    finished: TableCopy | None = None


Progress = Callable[[Step], None]


# -- checksums -------------------------------------------------------------------


def canonical(value: Any) -> Any:
    """A value as both dialects give it back for the same stored value: booleans and
    whole floats are integers (SQLite has neither booleans nor a strict REAL), bytes
    are hex."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float | Decimal):
        number = float(value)
        if not math.isfinite(number):
            return repr(number)
        if number.is_integer() and abs(number) < 2**53:
            return int(number)
        return number
    if isinstance(value, bytes | bytearray | memoryview):
        return {"bytes": bytes(value).hex()}
    return str(value)


def row_hash(row: Sequence[Any]) -> int:
    """128 bits of BLAKE2b over the row's canonical values as JSON. A table's
    checksum is the sum of its rows' hashes modulo 2**128: independent of the order
    rows are read in (the dialects sort text differently), and a row present twice
    counts twice."""
    text = json.dumps([canonical(v) for v in row], ensure_ascii=False, separators=(",", ":"))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=16).digest(), "big")


def _checksum(total: int) -> str:
    return f"{total % 2**128:032x}"


# -- the catalog of each dialect ---------------------------------------------------


def _q(name: str) -> str:
    """A quoted identifier (the same in both dialects)."""
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # as declared (SQLite) or format_type() (PostgreSQL), lower case
    derived: bool  # generated, or a full-text index column: never copied
    required: bool  # NOT NULL without a default: an insert must give it


@dataclass(frozen=True)
class Shape:
    name: str
    columns: dict[str, Column]
    key: tuple[str, ...]  # primary key columns in order (empty: none)
    identity_always: bool = False  # PostgreSQL GENERATED ALWAYS AS IDENTITY

    def data(self) -> list[str]:
        return [c.name for c in self.columns.values() if not c.derived]


async def _tables(db: Database) -> dict[str, str]:
    """The database's tables: name -> ``"table"``, ``"virtual"`` or ``"shadow"``."""
    if db.dialect == POSTGRESQL:
        rows = await db.fetchall(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')"
            " AND NOT c.relispartition"
        )
        return {str(name): "table" for (name,) in rows}
    import sqlite3

    if sqlite3.sqlite_version_info >= (3, 37, 0):
        rows = await db.fetchall("SELECT name, type FROM pragma_table_list WHERE schema = 'main'")
        return {
            str(name): str(kind)
            for name, kind in rows
            if kind in ("table", "virtual", "shadow") and not str(name).startswith("sqlite_")
        }
    rows = await db.fetchall("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
    kinds = {
        str(name): "virtual" if str(sql or "").upper().startswith("CREATE VIRTUAL") else "table"
        for name, sql in rows
        if not str(name).startswith("sqlite_")
    }
    virtual = [name for name, kind in kinds.items() if kind == "virtual"]
    for name in kinds:
        for v in virtual:
            if name.startswith(v + "_") and name[len(v) + 1 :] in _SHADOW_SUFFIXES:
                kinds[name] = "shadow"
    return kinds


async def _shape(db: Database, table: str) -> Shape | None:
    """The columns and primary key of ``table`` (None if there is no such table)."""
    if db.dialect == POSTGRESQL:
        rows = await db.fetchall(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attgenerated = 's',"
            " a.attidentity = 'a', a.attnotnull AND NOT a.atthasdef AND a.attidentity = ''"
            " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema() AND c.relname = ? AND c.relkind IN ('r', 'p')"
            " AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (table,),
        )
        if not rows:
            return None
        keys = await db.fetchall(
            "SELECT a.attname FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
            " WHERE n.nspname = current_schema() AND c.relname = ? AND i.indisprimary"
            " ORDER BY array_position(i.indkey::int2[], a.attnum)",
            (table,),
        )
        columns = {
            str(name): Column(
                str(name),
                str(kind).lower(),
                # tsvector: a full-text index kept by the table's own trigger or expression.
                bool(generated) or str(kind).lower() == "tsvector",
                bool(required),
            )
            for name, kind, generated, _always, required in rows
        }
        always = any(bool(row[3]) for row in rows)
        return Shape(table, columns, tuple(str(k) for (k,) in keys), always)
    rows = await db.fetchall(
        'SELECT name, type, "notnull", dflt_value, pk, hidden FROM pragma_table_xinfo(?)',
        (table,),
    )
    if not rows:
        return None
    columns = {}
    key: list[tuple[int, str]] = []
    for name, kind, notnull, default, pk, hidden in rows:
        name = str(name)
        rowid_alias = bool(pk) and str(kind or "").upper() == "INTEGER"
        columns[name] = Column(
            name,
            str(kind or "").lower(),
            bool(hidden),  # 2, 3: generated; 1: a virtual table's hidden column
            bool(notnull) and default is None and not rowid_alias,
        )
        if pk:
            key.append((int(pk), name))
    return Shape(table, columns, tuple(name for _, name in sorted(key)))


async def _references(db: Database, table: str) -> set[str]:
    """The tables ``table``'s foreign keys point at."""
    if db.dialect == POSTGRESQL:
        rows = await db.fetchall(
            "SELECT DISTINCT r.relname FROM pg_constraint k"
            " JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class r ON r.oid = k.confrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE k.contype = 'f' AND n.nspname = current_schema() AND c.relname = ?",
            (table,),
        )
    else:
        rows = await db.fetchall(
            'SELECT DISTINCT "table" FROM pragma_foreign_key_list(?)', (table,)
        )
    return {str(name) for (name,) in rows} - {table}


def _parents_first(tables: list[str], references: Mapping[str, set[str]]) -> list[str]:
    """``tables`` with each after the tables it references (name order otherwise;
    a cycle keeps name order for the tables in it)."""
    ordered: list[str] = []
    placed: set[str] = set()
    visiting: set[str] = set()

    def place(name: str) -> None:
        if name in placed or name in visiting:
            return
        visiting.add(name)
        for parent in sorted(references.get(name, ())):
            if parent in references:
                place(parent)
        visiting.discard(name)
        placed.add(name)
        ordered.append(name)

    for name in sorted(tables):
        place(name)
    return ordered


# -- values ------------------------------------------------------------------------


def _adapter(dialect: str, kind: str) -> Callable[[Any], Any] | None:
    """How a value from the other dialect goes into a column of type ``kind`` (None:
    as it is). asyncpg is strict about Python types; SQLite has no booleans."""
    if dialect == SQLITE:
        return _to_sqlite
    if kind == "boolean":
        return lambda v: bool(v) if isinstance(v, int | float) and not isinstance(v, bool) else v
    if kind in _PG_INTEGERS:
        return _to_int
    if kind in _PG_FLOATS:
        return lambda v: float(v) if isinstance(v, int | Decimal) and not isinstance(v, bool) else v
    if kind.startswith("numeric"):
        return lambda v: Decimal(str(v)) if isinstance(v, int | float) else v
    if kind == "text" or kind.startswith(("character", "varchar")):
        return lambda v: v if v is None or isinstance(v, str) else str(canonical(v))
    return None


def _to_sqlite(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _to_int(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float | Decimal) and float(value).is_integer():
        return int(value)
    return value


def _row_adapter(dialect: str, kinds: Sequence[str]) -> Callable[[Sequence[Any]], tuple]:
    adapters = [_adapter(dialect, kind) for kind in kinds]
    if not any(adapters):
        return tuple
    return lambda row: tuple(v if f is None else f(v) for f, v in zip(adapters, row, strict=True))


# -- migrate -------------------------------------------------------------------------


def url_password(url: str | None) -> str | None:
    """The password in a database URL, if any (to register it for redaction)."""
    try:
        return urlsplit(url).password if url else None
    except ValueError:
        return None


def database_for_url(url: str, *, must_exist: bool = False) -> Database:
    """The (unopened) database at ``url``: ``sqlite:///relative/path``,
    ``sqlite:////absolute/path`` or ``postgresql://...``. ``must_exist``: a SQLite
    file that is not there is a mistake (a source), not a new database."""
    from hark.config import ConfigError, display_url
    from hark.store import database_for_url as backend_for_url

    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        scheme = ""
    if scheme not in (SQLITE, POSTGRESQL, "postgres"):
        raise CopyError(
            f"not a database URL: {display_url(url)} (use sqlite:///PATH or postgresql://...)",
            usage=True,
        )
    try:
        db = backend_for_url(url)
    except (ConfigError, ValueError) as exc:
        raise CopyError(str(exc), usage=True) from None
    if must_exist and isinstance(db, SQLiteDatabase) and not db.path.is_file():
        raise CopyError(f"{db.display_url}: no such database file", usage=True)
    return db


def same_database(a: Database, b: Database) -> bool:
    if isinstance(a, SQLiteDatabase) and isinstance(b, SQLiteDatabase):
        return a.path.resolve() == b.path.resolve()
    return a.display_url == b.display_url


async def core_version(db: Database) -> int:
    """How many of the core's migrations ``db`` has applied (0: none, or a new one)."""
    if db.dialect == POSTGRESQL:
        (exists,) = await db.fetchone("SELECT to_regclass('schema_version') IS NOT NULL") or (0,)
        if not exists:
            return 0
        row = await db.fetchone("SELECT version FROM schema_version WHERE id = 1")
    else:
        row = await db.fetchone("PRAGMA user_version")
    return int(row[0]) if row else 0


async def open_counting(db: Database) -> int:
    """Open ``db`` and apply the core's migrations, as the bot does; returns the core
    schema version it had before (for :meth:`MigrationReport.lines`)."""
    await db.open(migrate=False)
    try:
        before = await core_version(db)
    finally:
        await db.close()
    await db.open()
    return before


async def migrate(
    db: Database,
    plugins: Mapping[str, Sequence[MigrationStep]],
    *,
    core_before: int | None = None,
) -> MigrationReport:
    """Apply the installed plugins' migrations to the open ``db`` (opening it applied
    the core's; ``core_before`` is its version before that, when known).

    Raises :class:`CopyError` naming the plugin and step when one fails."""
    from hark.store.plugin_db import schema_version

    now = await core_version(db)
    report = MigrationReport(db.display_url, (now if core_before is None else core_before, now))
    for plugin_id, steps in sorted(plugins.items()):
        before = await schema_version(db, plugin_id)
        try:
            await apply_plugin_migrations(db, plugin_id, steps)
        except PluginMigrationError as exc:
            raise CopyError(f"{db.display_url}: plugin {plugin_id}: {exc}") from None
        report.plugins[plugin_id] = (before, await schema_version(db, plugin_id))
    return report


# -- copy ----------------------------------------------------------------------------


def _owner(table: str, plugin_ids: Iterable[str]) -> str | None:
    """The plugin whose prefix ``table`` has (the longest, for ids that nest)."""
    owners = [p for p in plugin_ids if table.startswith(p + "_")]
    return max(owners, key=len) if owners else None


async def copy_database(
    source: Database,
    target: Database,
    *,
    plugins: Mapping[str, Sequence[MigrationStep]],
    skip_plugins: Iterable[str] = (),
    target_core_before: int | None = None,
    batch_rows: int = BATCH_ROWS,
    progress: Progress | None = None,
) -> CopyReport:
    """Copy ``source``'s data into ``target`` (both open). ``plugins``: the installed
    plugins' migrations, by plugin id. See the module's docstring for what is copied.

    Raises :class:`CopyError` for what cannot be copied as asked (checked before a
    row is written where possible); :class:`DatabaseUnavailable` passes through.
    """
    skip = set(skip_plugins)
    recorded = {
        str(p): int(v)
        for p, v in await source.fetchall("SELECT plugin_id, version FROM plugin_schema")
    }
    missing = sorted(p for p in recorded if p not in plugins and p not in skip)
    if missing:
        names = ", ".join(missing)
        flags = " ".join(f"--skip-plugin {p}" for p in missing)
        raise CopyError(
            f"the source has tables of plugins not installed here: {names} "
            f"(install them first, or pass {flags} to leave their data behind)",
            usage=True,
        )
    for plugin_id, version in sorted(recorded.items()):
        if plugin_id in skip:
            continue
        declared = len(plugins[plugin_id])
        if version > declared:
            raise CopyError(
                f"the source has {version} of {plugin_id}'s migrations applied but the installed "
                f"{plugin_id} declares {declared}: upgrade it first",
                usage=True,
            )
    # The source's plugins as this version would have them (what `bot run` does at
    # start), so both sides have the same columns and the same plugin_schema rows.
    await migrate(source, {p: plugins[p] for p in recorded if p not in skip})
    migrated = await migrate(target, plugins, core_before=target_core_before)
    report = CopyReport(source.display_url, target.display_url, migrated)

    kinds = await _tables(source)
    plan = [t for t in CORE_TABLES if t in kinds]
    extra: list[str] = []
    virtual = sorted((n for n, k in kinds.items() if k == "virtual"), key=len, reverse=True)
    for name, kind in sorted(kinds.items()):
        if name in CORE_TABLES or name in _INTERNAL:
            continue
        if name in LEFT_BEHIND:
            report.left_behind.append((name, LEFT_BEHIND[name]))
        elif kind == "virtual":
            report.left_behind.append(
                (name, "a derived index (full-text): the target's own migrations rebuild it")
            )
        elif kind == "shadow":
            # Listed with its virtual table, not on its own.
            if not any(name.startswith(v + "_") for v in virtual):
                report.left_behind.append((name, "part of a derived index"))
        elif (owner := _owner(name, recorded)) is None:
            report.left_behind.append(
                (name, "neither a core table nor named after a plugin in plugin_schema")
            )
        elif owner in skip:
            report.left_behind.append((name, f"plugin {owner} skipped"))
        else:
            extra.append(name)
    # Every table's columns are checked before a row is written.
    plan += _parents_first(extra, {name: await _references(target, name) for name in extra})
    shapes: list[tuple[Shape, Shape, list[str]]] = []
    for name in plan:
        src, dst = await _shape(source, name), await _shape(target, name)
        if src is None:
            continue
        if dst is None:
            owner = _owner(name, recorded) or "core"
            raise CopyError(
                f"table {name} is in the source but not in the target "
                f"(the installed {owner} does not create it)"
            )
        shapes.append((src, dst, _plan_columns(src, dst)))

    for index, (src, dst, columns) in enumerate(shapes, start=1):
        keep = None
        if src.name == "plugin_schema" and skip:
            # A skipped plugin's tables stay behind: so does the row saying they exist.
            at = columns.index("plugin_id")
            keep = _keeping(at, skip)
        step = _Stepper(progress, src.name, index, len(shapes))
        try:
            table = await _copy_table(source, target, src, dst, columns, batch_rows, keep, step)
        except (CopyError, DatabaseUnavailable):
            raise
        except DatabaseError as exc:
            raise CopyError(f"copying {src.name}: {exc}") from None
        report.tables.append(table)
    return report


def _plan_columns(source: Shape, target: Shape) -> list[str]:
    """The columns to copy, sorted by name (the checksums' order)."""
    wanted = source.data()
    absent = [c for c in wanted if c not in target.columns]
    if absent:
        raise CopyError(
            f"{source.name}.{absent[0]} is in the source but the target's {source.name} has "
            f"no such column (is the installed plugin older than the one that wrote it?)"
        )
    names = sorted(c for c in wanted if not target.columns[c].derived)
    unfilled = [
        c.name
        for c in target.columns.values()
        if c.required and not c.derived and c.name not in names
    ]
    if unfilled:
        raise CopyError(
            f"the target's {target.name}.{unfilled[0]} needs a value (NOT NULL without a "
            f"default) and the source has no such column"
        )
    return names


class _Stepper:
    """Calls ``progress`` (if any) with one table's :class:`Step`."""

    def __init__(self, progress: Progress | None, table: str, index: int, tables: int) -> None:
        self.progress, self.table, self.index, self.tables = progress, table, index, tables

    def __call__(self, done: int, rows: int, finished: TableCopy | None = None) -> None:
        if self.progress is not None:
            self.progress(Step(self.table, self.index, self.tables, done, rows, finished))


async def _copy_table(
    source: Database,
    target: Database,
    src: Shape,
    dst: Shape,
    columns: list[str],
    batch_rows: int,
    keep: Callable[[tuple[Any, ...]], bool] | None,
    step: _Stepper,
) -> TableCopy:
    name = src.name
    result = TableCopy(name)
    total = await _count(source, name)
    step(0, total)
    to_target = _row_adapter(target.dialect, [dst.columns[c].type for c in columns])
    select = ", ".join(_q(c) for c in columns)
    # Rows are matched by the target's primary key; the source is read in its own.
    keyed = bool(dst.key) and bool(src.key) and set(dst.key) | set(src.key) <= set(columns)
    copying = True
    if not keyed and await _count(target, name):
        # Without a key a row already there cannot be told from a new one: such a
        # table is copied only into an empty one (and compared whole below).
        result.note = "no primary key: copied only into an empty table"
        copying = False
    key_at = [columns.index(k) for k in dst.key] if keyed else []
    key_kinds = [dst.columns[k].type for k in dst.key] if keyed else []
    source_sum = target_sum = 0
    async for page in _read(source, name, columns, src.key if keyed else (), batch_rows):
        rows = [r for r in page if keep(r)] if keep is not None else page
        result.source += len(rows)
        source_sum += sum(row_hash(r) for r in rows)
        if rows and copying:
            adapted = [to_target(r) for r in rows]
            copied = await _insert(target, dst, columns, adapted)
            result.copied += copied
            result.already += len(rows) - copied
            if keyed:
                keys = [tuple(r[i] for i in key_at) for r in adapted]
                found = await _by_keys(target, name, select, dst.key, key_kinds, keys)
                result.found += len(found)
                target_sum += sum(row_hash(r) for r in found)
        step(result.source, max(total, result.source))
    if not keyed:
        # Compared whole: every row of the target's table against the source's.
        async for rows in _read(target, name, columns, (), batch_rows):
            result.found += len(rows)
            target_sum += sum(row_hash(r) for r in rows)
    if target.dialect == POSTGRESQL:
        await _advance_sequences(target, dst)
    result.source_checksum, result.target_checksum = _checksum(source_sum), _checksum(target_sum)
    step(result.source, result.source, result)
    return result


def _keeping(at: int, skip: set[str]) -> Callable[[tuple[Any, ...]], bool]:
    def keep(row: tuple[Any, ...]) -> bool:
        return row[at] not in skip

    return keep


def _max_params(db: Database) -> int:
    """Bound parameters one statement may have: asyncpg counts them in 16 bits;
    SQLite allowed 999 before 3.32."""
    import sqlite3

    if db.dialect == SQLITE and sqlite3.sqlite_version_info < (3, 32, 0):
        return 999
    return MAX_PARAMS


async def _count(db: Database, table: str) -> int:
    row = await db.fetchone(f"SELECT count(*) FROM {_q(table)}")
    return int(row[0]) if row else 0


async def _read(
    db: Database, table: str, columns: list[str], key: Sequence[str], batch_rows: int
) -> AsyncIterator[list[tuple[Any, ...]]]:
    """The table's rows, ``batch_rows`` at a time: in key order from the last key seen
    (keyset paging: each page is an index range), or for a table without a key by
    offset in the order of all its columns."""
    select = ", ".join(_q(c) for c in columns)
    if key:
        order = ", ".join(_q(k) for k in key)
        at = [columns.index(k) for k in key]
        after = f"({order}) > ({', '.join('?' for _ in key)})" if len(key) > 1 else f"{order} > ?"
        last: tuple[Any, ...] | None = None
        while True:
            if last is None:
                sql = f"SELECT {select} FROM {_q(table)} ORDER BY {order} LIMIT ?"
                params: tuple[Any, ...] = (batch_rows,)
            else:
                sql = f"SELECT {select} FROM {_q(table)} WHERE {after} ORDER BY {order} LIMIT ?"
                params = (*last, batch_rows)
            rows = await db.fetchall(sql, params)
            if not rows:
                return
            yield rows
            if len(rows) < batch_rows:
                return
            last = tuple(rows[-1][i] for i in at)
    else:
        offset = 0
        while True:
            rows = await db.fetchall(
                f"SELECT {select} FROM {_q(table)} ORDER BY {select} LIMIT ? OFFSET ?",
                (batch_rows, offset),
            )
            if not rows:
                return
            yield rows
            if len(rows) < batch_rows:
                return
            offset += len(rows)


async def _insert(target: Database, shape: Shape, columns: list[str], rows: list[tuple]) -> int:
    """Insert ``rows`` in one transaction, leaving alone those whose key is there
    already; returns how many were inserted."""
    names = ", ".join(_q(c) for c in columns)
    one = "(" + ", ".join("?" for _ in columns) + ")"
    # An identity column that refuses given values takes them with this clause: ids kept.
    overriding = " OVERRIDING SYSTEM VALUE" if shape.identity_always else ""
    per_statement = max(1, _max_params(target) // max(1, len(columns)))
    inserted = 0
    async with target.transaction() as tx:
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            sql = (
                f"INSERT INTO {_q(shape.name)} ({names}){overriding}"
                f" VALUES {', '.join(one for _ in chunk)} ON CONFLICT DO NOTHING"
            )
            inserted += await tx.execute(sql, [v for row in chunk for v in row])
    return inserted


async def _by_keys(
    db: Database,
    table: str,
    select: str,
    key: Sequence[str],
    kinds: Sequence[str],
    keys: list[tuple],
) -> list[tuple]:
    """The rows of ``table`` whose primary key is one of ``keys``."""
    found: list[tuple] = []
    if db.dialect == POSTGRESQL:
        # One array parameter per key column, typed like the column (a list of
        # values would otherwise be text, and bigint = text does not compare).
        arrays = [[k[i] for k in keys] for i in range(len(key))]
        if len(key) == 1:
            where = f"{_q(key[0])} = ANY(?::{kinds[0]}[])"
        else:
            unnest = ", ".join(f"?::{kind}[]" for kind in kinds)
            cols = ", ".join(_q(k) for k in key)
            where = f"({cols}) IN (SELECT * FROM unnest({unnest}))"
        return list(await db.fetchall(f"SELECT {select} FROM {_q(table)} WHERE {where}", arrays))
    per_statement = max(1, _max_params(db) // len(key))
    for start in range(0, len(keys), per_statement):
        chunk = keys[start : start + per_statement]
        if len(key) == 1:
            where = f"{_q(key[0])} IN ({', '.join('?' for _ in chunk)})"
        else:
            one = "(" + ", ".join("?" for _ in key) + ")"
            cols = ", ".join(_q(k) for k in key)
            where = f"({cols}) IN (VALUES {', '.join(one for _ in chunk)})"
        sql = f"SELECT {select} FROM {_q(table)} WHERE {where}"
        found += await db.fetchall(sql, [v for k in chunk for v in k])
    return found


async def _advance_sequences(target: Database, shape: Shape) -> None:
    """Move each sequence behind a column of ``shape`` (BIGSERIAL, identity) past the
    column's highest value, so the next row the bot writes gets a new id."""
    for column in shape.columns.values():
        if column.type not in _PG_INTEGERS:
            continue
        row = await target.fetchone(
            "SELECT pg_get_serial_sequence(?, ?)", (_q(shape.name), column.name)
        )
        sequence = row[0] if row else None
        if not sequence:
            continue
        top = await target.fetchone(f"SELECT max({_q(column.name)}) FROM {_q(shape.name)}")
        if top is None or top[0] is None:
            continue
        async with target.transaction() as tx:
            # Only forwards: a sequence already past the copied ids stays where it is.
            await tx.fetchone(
                "SELECT setval(?::text::regclass, GREATEST(?::bigint, "
                "(SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END"
                f" FROM {sequence})), true)",
                (sequence, int(top[0])),
            )
