"""`bot db migrate` and `bot db copy`: real SQLite files and a real PostgreSQL server.

The command runs as a subprocess, the way operators run it; the databases are
then read back directly (not through the copy's own report) to check that every
row arrived. Some finer cases call :func:`hark.store.copy.copy_database` in-process.
"""

from __future__ import annotations

import asyncio
import os
import pty
import random
import re
import sqlite3
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hark_memory import MIGRATIONS as MEMORY_MIGRATIONS
from hark_memory import MemoryStore

from hark.store.copy import CopyError, canonical, copy_database, row_hash
from hark.store.plugin_db import BotPluginDatabase, apply_plugin_migrations
from hark.store.postgres import PostgresDatabase
from hark.store.sqlite import SQLiteDatabase

BOT = [sys.executable, "-m", "hark.cli"]
PASSWORD = "pg-pass-7f3a91c2"
HISTORY_ROWS = 3500  # more than one batch (2000)
# Discord ids are 64-bit: larger than a PostgreSQL INTEGER can hold.
GUILD, OTHER_GUILD, CHANNEL = 1180000000000000111, 1180000000000000222, 1180000000000000333

# What each table is compared by: every row, in a fixed order.
TABLES = {
    "plugin_state": "guild_id, plugin_id",
    "provider_choice": "guild_id, capability",
    "settings": "namespace, scope, key",
    "history": "id",
    "inflight_reply": "message_id",
    "plugin_schema": "plugin_id",
    "memory_facts": "id",
}


def clean_env(tmp_path: Path, **extra: str | None) -> dict[str, str]:
    """The environment of a `bot` subprocess (a value of None: unset)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "HARK_", "BOT_"))}
    # Only memory among the installed plugins: it has tables (with a full-text index).
    env.update(HARK_DATA_DIR=str(tmp_path / "default-data"), HARK_LOAD_PLUGINS="memory")
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


async def bot(tmp_path: Path, *args: str, **env: str | None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *BOT,
        *args,
        cwd=tmp_path,
        env=clean_env(tmp_path, **env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode, out.decode(), err.decode()


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    return lines[0]


def with_password(postgres_cluster, url: str) -> str:
    """``url`` with a password (trust auth accepts any), to check it is never shown."""
    return postgres_cluster.url(urlsplit(url).path.lstrip("/"), password=PASSWORD)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


async def open_db(url_or_path: str | Path):
    db = (
        PostgresDatabase(url_or_path)
        if str(url_or_path).startswith("postgresql://")
        else SQLiteDatabase(url_or_path)
    )
    await db.open()
    return db


async def populate(path: Path, *, history_rows: int = HISTORY_ROWS) -> None:
    """A bot's SQLite database as months of use leave it."""
    db = await open_db(path)
    try:
        await apply_plugin_migrations(db, "memory", MEMORY_MIGRATIONS)
        rng = random.Random(16)
        async with db.transaction() as tx:
            await tx.executemany(
                "INSERT INTO plugin_state (guild_id, plugin_id, enabled) VALUES (?, ?, ?)",
                [(0, "memory", 1), (GUILD, "memory", 0), (OTHER_GUILD, "twitch", 1)],
            )
            await tx.executemany(
                "INSERT INTO provider_choice (guild_id, capability, provider_id) VALUES (?, ?, ?)",
                [(0, "generate", "llm_ollama"), (GUILD, "synthesize", "tts_piper")],
            )
            await tx.executemany(
                "INSERT INTO settings (namespace, scope, key, value) VALUES (?, ?, ?, ?)",
                [
                    ("chat", "global", "max_images", "2"),
                    ("persona", f"guild:{GUILD}", "text", 'Say "hi" — ünïcødé ✓\nand 💬'),
                    ("persona", f"channel:{CHANNEL}", "text", "it's; a -- test"),
                    ("memory", "global", "enabled", "true"),
                ],
            )
            await tx.executemany(
                "INSERT INTO history (channel_id, guild_id, role, author_id, author_name,"
                " content, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        CHANNEL + i % 7,
                        None if i % 11 == 0 else GUILD,  # some DMs
                        "user" if i % 2 else "assistant",
                        GUILD + i if i % 2 else None,
                        f"member {i} ✓" if i % 2 else None,
                        f"message {i}: " + "x" * rng.randrange(0, 300),
                        1_700_000_000 + i * 0.125,
                    )
                    for i in range(history_rows)
                ],
            )
            await tx.executemany(
                "INSERT INTO inflight_reply (message_id, channel_id, created_at) VALUES (?, ?, ?)",
                [(CHANNEL + 1000 + i, CHANNEL, 1_700_000_500.5 + i) for i in range(3)],
            )
            await tx.execute(
                "INSERT INTO runtime_status (process, plugin_id, line, updated_at)"
                " VALUES ('host:1', 'chat', 'fine', 1.0)"
            )
        store = MemoryStore(BotPluginDatabase(db, "memory"))
        await store.db.executemany(
            "INSERT INTO memory_facts (space, subject_id, subject_name, text, importance,"
            " said_by, said_by_name, guild_id, channel_id, origin, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (f"guild:{GUILD}", GUILD + 1, "Ada", "Ada plays the cello", 3, GUILD + 1,
                 "Ada", GUILD, CHANNEL, "extracted", 1.5, 2.5),
                (f"guild:{GUILD}", None, None, "This server loves jazz", 2, None, None, GUILD,
                 None, "tool", 3.0, 3.0),
                (f"dm:{GUILD + 2}", GUILD + 2, "Bo", "Bo lives in Oslo", 1, GUILD + 2, "Bo",
                 None, None, "extracted", 4.0, 4.0),
            ],
        )  # fmt: skip
        assert [f.text for f in await store.search(f"guild:{GUILD}", "who plays cello")] == [
            "Ada plays the cello"
        ]
    finally:
        await db.close()


async def contents(url_or_path: str | Path) -> dict[str, list[tuple]]:
    """Every row of the bot's tables, canonical (booleans and whole floats as ints)."""
    db = await open_db(url_or_path)
    try:
        out = {}
        for table, order in TABLES.items():
            columns = await _columns(db, table)
            rows = await db.fetchall(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}")
            out[table] = [tuple(canonical(v) for v in row) for row in rows]
        return out
    finally:
        await db.close()


async def _columns(db, table: str) -> list[str]:
    # The columns both dialects have (not PostgreSQL's derived tsvector of memory).
    if db.dialect == "postgresql":
        rows = await db.fetchall(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ?"
            " AND table_schema = current_schema() AND data_type <> 'tsvector'"
            " ORDER BY column_name",
            (table,),
        )
    else:
        rows = await db.fetchall(
            "SELECT name FROM pragma_table_xinfo(?) WHERE hidden = 0 ORDER BY name", (table,)
        )
    return [r[0] for r in rows]


def counts_table(out: str) -> dict[str, tuple[int, int, int]]:
    """The report's table: name -> (source, copied, already there)."""
    found = {}
    for line in out.splitlines():
        match = re.match(r"^(\w+)\s+(\d+)\s+(\d+)\s+(\d+)(\s+[0-9a-f]{12})?$", line)
        if match:
            found[match[1]] = (int(match[2]), int(match[3]), int(match[4]))
    return found


async def search(url_or_path: str | Path, space: str, text: str) -> list[str]:
    db = await open_db(url_or_path)
    try:
        return [
            f.text for f in await MemoryStore(BotPluginDatabase(db, "memory")).search(space, text)
        ]
    finally:
        await db.close()


# -- SQLite -> PostgreSQL -> SQLite ------------------------------------------------------


async def test_copy_sqlite_to_postgresql_keeps_every_row_and_reruns_copy_nothing(
    tmp_path, postgres_cluster, postgres_url
):
    source = tmp_path / "bot.sqlite3"
    await populate(source)
    target = with_password(postgres_cluster, postgres_url)

    code, out, err = await bot(tmp_path, "db", "copy", "--from", sqlite_url(source), "--to", target)
    assert code == 0, out + err
    assert PASSWORD not in out + err and "***" in out
    table = counts_table(out)
    assert table["history"] == (HISTORY_ROWS, HISTORY_ROWS, 0)
    assert table["settings"] == (4, 4, 0) and table["memory_facts"] == (3, 3, 0)
    # memory's own migration wrote its plugin_schema row in the target first.
    assert table["plugin_schema"] == (1, 0, 1)
    assert "runtime_status" not in table and "memory_facts_fts" not in table
    assert re.search(r"not copied: memory_facts_fts \(a derived index", out)
    assert "verified: all" in out
    # Not a bar: the output is not a terminal. One line per table, in order.
    assert "[4/7] history: 3500 rows, 3500 copied, 0 already there" in out
    assert "\r" not in out

    copied = await contents(postgres_url)
    assert copied == await contents(source)
    assert len(copied["history"]) == HISTORY_ROWS
    # The full-text index was rebuilt in PostgreSQL's own way: search works on the copy.
    assert await search(postgres_url, f"guild:{GUILD}", "who plays cello") == [
        "Ada plays the cello"
    ]
    assert await search(postgres_url, f"dm:{GUILD + 2}", "Oslo") == ["Bo lives in Oslo"]
    assert await search(postgres_url, f"guild:{GUILD}", "Oslo") == []

    # History ids were kept, and the sequence moved past them: a new row gets the next.
    db = await open_db(postgres_url)
    try:
        async with db.transaction() as tx:
            (new_id,) = await tx.fetchone(
                "INSERT INTO history (channel_id, guild_id, role, content, created_at)"
                " VALUES (?, ?, 'user', 'after the move', 1.0) RETURNING id",
                (CHANNEL, GUILD),
            )
        assert new_id == HISTORY_ROWS + 1
        await db.execute("DELETE FROM history WHERE id = ?", (new_id,))
    finally:
        await db.close()

    # Safe to re-run: nothing new to copy, every row found again.
    code, out, err = await bot(tmp_path, "db", "copy", "--from", sqlite_url(source), "--to", target)
    assert code == 0, out + err
    table = counts_table(out)
    assert table["history"] == (HISTORY_ROWS, 0, HISTORY_ROWS)
    assert table["total"][1] == 0
    assert await contents(postgres_url) == copied

    # ... and back again, PostgreSQL -> a new SQLite file, identical to where it started.
    back = tmp_path / "back" / "bot.sqlite3"
    code, out, err = await bot(tmp_path, "db", "copy", "--from", target, "--to", sqlite_url(back))
    assert code == 0, out + err
    assert counts_table(out)["history"] == (HISTORY_ROWS, HISTORY_ROWS, 0)
    assert await contents(back) == await contents(source)
    assert await search(back, f"guild:{GUILD}", "cello") == ["Ada plays the cello"]
    with sqlite3.connect(back) as raw:
        # SQLite's own counter is past the copied ids too.
        assert raw.execute("SELECT seq FROM sqlite_sequence WHERE name = 'history'").fetchone() == (
            HISTORY_ROWS,
        )


async def test_a_row_changed_in_the_target_fails_the_verification(
    tmp_path, postgres_cluster, postgres_url
):
    source = tmp_path / "bot.sqlite3"
    await populate(source, history_rows=10)
    code, out, err = await bot(
        tmp_path, "db", "copy", "--from", sqlite_url(source), "--to", postgres_url
    )
    assert code == 0, out + err
    db = await open_db(postgres_url)
    try:
        await db.execute("UPDATE settings SET value = '9' WHERE key = 'max_images'")
    finally:
        await db.close()
    code, out, err = await bot(
        tmp_path, "db", "copy", "--from", sqlite_url(source), "--to", postgres_url
    )
    assert code == 1
    line = one_error_line(err)
    assert "does not match the source" in line and "settings" in line and "checksums" in line
    assert "history" not in line
    # The row already there was left alone.
    db = await open_db(postgres_url)
    try:
        assert await db.fetchone("SELECT value FROM settings WHERE key = 'max_images'") == ("9",)
    finally:
        await db.close()


async def test_progress_is_a_bar_on_a_terminal(tmp_path):
    source, target = tmp_path / "a.sqlite3", tmp_path / "b.sqlite3"
    await populate(source)
    controller, terminal = pty.openpty()
    proc = await asyncio.create_subprocess_exec(
        *BOT,
        "db",
        "copy",
        "--from",
        sqlite_url(source),
        "--to",
        sqlite_url(target),
        cwd=tmp_path,
        env=clean_env(tmp_path),
        stdout=terminal,
        stderr=asyncio.subprocess.PIPE,
    )
    os.close(terminal)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(controller, 65536)
            except OSError:  # EIO: the child closed its end
                return
            if not data:
                return
            chunks.append(data)

    reading = asyncio.get_running_loop().run_in_executor(None, drain)
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    await asyncio.wait_for(reading, 30)
    os.close(controller)
    out = b"".join(chunks).decode()
    assert proc.returncode == 0, out + err.decode()
    # Redrawn in place: a carriage return, a bar and a percentage, then the table's line.
    assert re.search(r"\r\x1b\[K\[4/7\] history \[#*\.*\]\s+\d+%", out)
    assert "[4/7] history: 3500 rows, 3500 copied, 0 already there" in out


# -- bot db migrate ------------------------------------------------------------------------


async def test_migrate_creates_the_schema_in_an_empty_postgresql(
    tmp_path, postgres_cluster, postgres_url
):
    url = with_password(postgres_cluster, postgres_url)
    # Every installed plugin, as `bot run` loads them by default.
    code, out, err = await bot(tmp_path, "db", "migrate", "--url", url, HARK_LOAD_PLUGINS=None)
    assert code == 0, out + err
    assert PASSWORD not in out + err
    lines = out.splitlines()
    assert lines[0].startswith("database: postgresql://hark:***@127.0.0.1:")
    assert re.fullmatch(r"core: applied migrations 1-\d+", lines[1]), out
    assert "memory: applied migration 1" in lines
    db = await open_db(postgres_url)
    try:
        tables = {r[0] for r in await db.fetchall(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )}  # fmt: skip
        assert set(TABLES) <= tables
        assert await db.fetchone(
            "SELECT version FROM plugin_schema WHERE plugin_id = 'memory'"
        ) == (len(MEMORY_MIGRATIONS),)
    finally:
        await db.close()
    code, out, err = await bot(tmp_path, "db", "migrate", "--url", url, HARK_LOAD_PLUGINS=None)
    assert code == 0, out + err
    assert "applied" not in out
    assert re.search(r"^core: up to date \(migration \d+\)$", out, re.M)
    assert "memory: up to date (migration 1)" in out


async def test_migrate_defaults_to_the_configured_database(tmp_path, postgres_url):
    # HARK_DATABASE_URL is what `bot run` would use; without it, the SQLite file.
    code, out, err = await bot(tmp_path, "db", "migrate", HARK_DATABASE_URL=postgres_url)
    assert code == 0, out + err
    first = out.splitlines()[0]
    assert first.startswith("database: postgresql://") and urlsplit(postgres_url).path in first
    code, out, err = await bot(tmp_path, "db", "migrate", HARK_DATA_DIR=str(tmp_path / "d"))
    assert code == 0, out + err
    with sqlite3.connect(tmp_path / "d" / "hark.sqlite3") as raw:
        assert raw.execute("SELECT version FROM plugin_schema").fetchall() == [(1,)]


# -- mistakes and failures: one line, an exit code --------------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (("--from", "mysql://root:hunter2-secret@db/bot", "--to", "sqlite:///x.db"), 2,
         "not a database URL: mysql://root:***@db/bot"),
        (("--from", "sqlite:///nowhere/bot.sqlite3", "--to", "sqlite:///x.db"), 2,
         "no such database file"),
        (("--from", "sqlite:///same.db", "--to", "sqlite:///same.db"), 2, "the same database"),
    ],
)  # fmt: skip
async def test_copy_mistakes(tmp_path, args, code, says):
    (tmp_path / "same.db").touch()
    got, out, err = await bot(tmp_path, "db", "copy", *args)
    assert got == code, out + err
    assert says in one_error_line(err)
    assert "hunter2-secret" not in out + err
    assert not (tmp_path / "x.db").exists()


async def test_unreachable_postgresql_is_one_line_with_the_password_hidden(tmp_path):
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    source = tmp_path / "bot.sqlite3"
    await populate(source, history_rows=5)
    url = f"postgresql://hark:{PASSWORD}@127.0.0.1:{port}/bot"
    code, out, err = await bot(tmp_path, "db", "copy", "--from", sqlite_url(source), "--to", url)
    assert code == 1, out + err
    line = one_error_line(err)
    assert f"postgresql://hark:***@127.0.0.1:{port}/bot" in line
    assert PASSWORD not in out + err
    code, out, err = await bot(tmp_path, "db", "migrate", "--url", url)
    assert code == 1 and PASSWORD not in out + err
    assert f"127.0.0.1:{port}" in one_error_line(err)


async def test_a_plugin_not_installed_here_is_refused_unless_skipped(tmp_path, postgres_url):
    source = tmp_path / "bot.sqlite3"
    await populate(source, history_rows=5)
    with sqlite3.connect(source) as raw:
        raw.execute("CREATE TABLE ghost_items (id INTEGER PRIMARY KEY, text TEXT)")
        raw.execute("INSERT INTO ghost_items (text) VALUES ('boo')")
        raw.execute("INSERT INTO plugin_schema (plugin_id, version) VALUES ('ghost', 1)")
    args = ("db", "copy", "--from", sqlite_url(source), "--to", postgres_url)
    code, out, err = await bot(tmp_path, *args)
    assert code == 2, out + err
    line = one_error_line(err)
    assert "not installed here: ghost" in line and "--skip-plugin ghost" in line
    db = await open_db(postgres_url)
    try:
        assert await db.fetchone("SELECT count(*) FROM history") == (0,)  # nothing written
    finally:
        await db.close()

    code, out, err = await bot(tmp_path, *args, "--skip-plugin", "ghost")
    assert code == 0, out + err
    assert "not copied: ghost_items (plugin ghost skipped)" in out
    assert counts_table(out)["plugin_schema"] == (1, 0, 1)  # memory's only
    db = await open_db(postgres_url)
    try:
        assert await db.fetchall("SELECT plugin_id FROM plugin_schema") == [("memory",)]
        assert await db.fetchone("SELECT count(*) FROM history") == (5,)
    finally:
        await db.close()


async def test_a_column_the_target_lacks_is_an_error_before_anything_is_copied(
    tmp_path, postgres_url
):
    source = tmp_path / "bot.sqlite3"
    await populate(source, history_rows=5)
    with sqlite3.connect(source) as raw:
        raw.execute("ALTER TABLE memory_facts ADD COLUMN mood TEXT")
    code, out, err = await bot(
        tmp_path, "db", "copy", "--from", sqlite_url(source), "--to", postgres_url
    )
    assert code == 1, out + err
    assert "memory_facts.mood is in the source" in one_error_line(err)
    db = await open_db(postgres_url)
    try:
        assert await db.fetchone("SELECT count(*) FROM settings") == (0,)
    finally:
        await db.close()


async def test_bot_db_alone_shows_its_actions(tmp_path):
    code, out, _ = await bot(tmp_path, "db")
    assert code == 2 and "migrate" in out and "copy" in out


# -- finer cases, in-process -------------------------------------------------------------------

# A plugin whose tables have what the first-party ones don't: a composite key, a
# table without a key, a foreign key to a table that sorts after it, a generated
# column, booleans and floats.
GADGET = [
    {
        "sqlite": """
        CREATE TABLE gadget_a_child (
            parent INTEGER NOT NULL REFERENCES gadget_b_parent (id),
            slot TEXT NOT NULL,
            on_off INTEGER NOT NULL,
            weight REAL,
            PRIMARY KEY (parent, slot)
        );
        CREATE TABLE gadget_b_parent (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            shout TEXT GENERATED ALWAYS AS (upper(name)) STORED
        );
        CREATE TABLE gadget_log (line TEXT, at REAL);
        """,
        "postgresql": """
        CREATE TABLE gadget_b_parent (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name TEXT NOT NULL,
            shout TEXT GENERATED ALWAYS AS (upper(name)) STORED,
            words tsvector
        );
        CREATE FUNCTION gadget_words() RETURNS trigger AS $$
        BEGIN
            NEW.words := to_tsvector('simple', NEW.name);
            RETURN NEW;
        END
        $$ LANGUAGE plpgsql;
        CREATE TRIGGER gadget_words BEFORE INSERT OR UPDATE ON gadget_b_parent
            FOR EACH ROW EXECUTE FUNCTION gadget_words();
        CREATE TABLE gadget_a_child (
            parent BIGINT NOT NULL REFERENCES gadget_b_parent (id),
            slot TEXT NOT NULL,
            on_off BOOLEAN NOT NULL,
            weight DOUBLE PRECISION,
            PRIMARY KEY (parent, slot)
        );
        CREATE TABLE gadget_log (line TEXT, at DOUBLE PRECISION);
        """,
    }
]
PLUGINS = {"memory": MEMORY_MIGRATIONS, "gadget": GADGET}


async def gadget_source(path: Path, parents: int = 23) -> None:
    await populate(path, history_rows=50)
    db = await open_db(path)
    try:
        await apply_plugin_migrations(db, "gadget", GADGET)
        async with db.transaction() as tx:
            await tx.executemany(
                "INSERT INTO gadget_b_parent (id, name) VALUES (?, ?)",
                [(i * 10, f"p{i}") for i in range(1, parents + 1)],
            )
            await tx.executemany(
                "INSERT INTO gadget_a_child (parent, slot, on_off, weight) VALUES (?, ?, ?, ?)",
                [
                    (i * 10, slot, (i + n) % 2, None if n == 2 else i / 3)
                    for i in range(1, parents + 1)
                    for n, slot in enumerate(["a", "B", "ç"])
                ],
            )
            await tx.executemany(
                "INSERT INTO gadget_log (line, at) VALUES (?, ?)", [("same", 1.0), ("same", 1.0)]
            )
    finally:
        await db.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def target_url(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "target.sqlite3")
    return await request.getfixturevalue("postgres_cluster").create_database()


async def test_composite_keys_foreign_keys_keyless_tables_in_small_batches(tmp_path, target_url):
    source_path = tmp_path / "source.sqlite3"
    await gadget_source(source_path)
    source, target = await open_db(source_path), await open_db(target_url)
    steps = []
    try:
        report = await copy_database(
            source, target, plugins=PLUGINS, batch_rows=7, progress=steps.append
        )
        by_name = {t.table: t for t in report.tables}
        # Parents before children, whatever their names.
        names = [t.table for t in report.tables]
        assert names.index("gadget_b_parent") < names.index("gadget_a_child")
        assert by_name["gadget_a_child"].source == by_name["gadget_a_child"].copied == 69
        assert by_name["gadget_log"].copied == 2 and not report.differences
        assert all(t.matches for t in report.tables)
        # Progress per batch of 7, ending with the finished table.
        child = [s for s in steps if s.table == "gadget_a_child"]
        assert [s.done for s in child] == [0, *range(7, 69, 7), 69, 69]
        assert child[-1].finished is by_name["gadget_a_child"]

        rows = await target.fetchall(
            "SELECT parent, slot, on_off, weight FROM gadget_a_child ORDER BY parent, slot"
        )
        expect = await source.fetchall(
            "SELECT parent, slot, on_off, weight FROM gadget_a_child ORDER BY parent, slot"
        )
        assert sorted(tuple(map(canonical, r)) for r in rows) == sorted(
            tuple(map(canonical, r)) for r in expect
        )
        # The generated column was derived again, not copied.
        assert await target.fetchone("SELECT shout FROM gadget_b_parent WHERE id = 30") == ("P3",)

        # A re-run copies nothing, a keyless table included (copied only into an empty one).
        again = await copy_database(source, target, plugins=PLUGINS, batch_rows=7)
        assert again.copied == 0 and not again.differences
        log = {t.table: t for t in again.tables}["gadget_log"]
        assert log.note.startswith("no primary key") and log.found == 2

        # And back into a new SQLite file: PostgreSQL's derived columns (generated,
        # and a tsvector its trigger fills) stay behind, the rest comes back whole.
        back = await open_db(tmp_path / "back.sqlite3")
        try:
            report = await copy_database(target, back, plugins=PLUGINS, batch_rows=7)
            assert not report.differences and report.copied > 0
            for table in ("gadget_a_child", "gadget_b_parent", "gadget_log"):
                columns = ", ".join(await _columns(back, table))
                ordered = f"SELECT {columns} FROM {table} ORDER BY {columns}"
                assert await back.fetchall(ordered) == await source.fetchall(ordered), table
        finally:
            await back.close()
    finally:
        await source.close()
        await target.close()


async def test_an_interrupted_copy_is_finished_by_the_next_run(tmp_path, target_url):
    source_path = tmp_path / "source.sqlite3"
    await populate(source_path, history_rows=100)
    source, target = await open_db(source_path), await open_db(target_url)

    class Crash(Exception):
        pass

    def crash(step):
        if step.table == "history" and step.done >= 30:
            raise Crash  # the process dies in the middle of history

    try:
        with pytest.raises(Crash):
            await copy_database(
                source, target, plugins={"memory": MEMORY_MIGRATIONS}, batch_rows=10, progress=crash
            )
        assert await target.fetchone("SELECT count(*) FROM history") == (30,)
        report = await copy_database(source, target, plugins={"memory": MEMORY_MIGRATIONS})
        history = {t.table: t for t in report.tables}["history"]
        assert (history.source, history.copied, history.already) == (100, 70, 30)
        assert not report.differences
    finally:
        await source.close()
        await target.close()
    assert await contents(target_url) == await contents(source_path)


async def test_a_downgraded_plugin_is_refused(tmp_path):
    source_path = tmp_path / "source.sqlite3"
    await populate(source_path, history_rows=1)
    source, target = await open_db(source_path), await open_db(tmp_path / "t.sqlite3")
    try:
        await source.execute("UPDATE plugin_schema SET version = 2 WHERE plugin_id = 'memory'")
        with pytest.raises(CopyError, match="2 of memory's migrations applied") as raised:
            await copy_database(source, target, plugins={"memory": MEMORY_MIGRATIONS})
        assert raised.value.usage
    finally:
        await source.close()
        await target.close()


def test_checksums_are_the_same_for_the_same_values_in_either_dialect():
    # What SQLite gives back and what PostgreSQL gives back for one stored row.
    assert row_hash((1, 5.0, None, "ü")) == row_hash((True, 5, None, "ü"))
    assert row_hash((1, 5.5)) != row_hash((1, 5.25))
    assert row_hash(("a", "b")) != row_hash(("b", "a"))
    assert canonical(b"\x00\xff") == {"bytes": "00ff"}
