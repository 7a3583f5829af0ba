"""Plugins' own tables: hark.Plugin(migrations=...), plugin_schema, host.database()."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

import hark
from hark.api import PluginDatabase
from hark.config import Config
from hark.runtime import Runtime
from hark.store import Database
from hark.store.plugin_db import (
    PluginMigrationError,
    SQLitePluginDatabase,
    apply_plugin_migrations,
    schema_version,
    split_statements,
)
from hark.testing.harness import isolated_manager

NOTES_V1 = "CREATE TABLE notes_items (id INTEGER PRIMARY KEY, text TEXT NOT NULL);"
NOTES_V2 = """
    -- full-text search over the notes, kept in step by triggers
    CREATE VIRTUAL TABLE notes_fts USING fts5(text, content='notes_items', content_rowid='id');
    CREATE TRIGGER notes_ai AFTER INSERT ON notes_items BEGIN
        INSERT INTO notes_fts (rowid, text) VALUES (new.id, new.text);
    END;
"""


@pytest.fixture
async def db(tmp_path):
    database = Database(tmp_path / "hark.sqlite3")
    await database.open()
    yield database
    await database.close()


def test_statements_split_where_sqlite_says_they_end():
    script = """
        -- a comment; with a semicolon
        CREATE TABLE a (x TEXT DEFAULT 'one; two');
        CREATE TRIGGER t AFTER INSERT ON a BEGIN
            INSERT INTO a VALUES ('x'); INSERT INTO a VALUES ('y');
        END;
        ;
        INSERT INTO a VALUES ('last')
    """
    statements = split_statements(script)
    assert len(statements) == 3
    assert statements[0].endswith("DEFAULT 'one; two');")
    assert statements[1].startswith("CREATE TRIGGER") and statements[1].endswith("END;")
    assert statements[2] == "INSERT INTO a VALUES ('last')"


async def test_steps_run_once_each_and_the_version_is_kept_per_plugin(db):
    assert await apply_plugin_migrations(db, "notes", [NOTES_V1]) == 1
    assert await schema_version(db, "notes") == 1
    # A later version of the plugin adds a step: only that one runs.
    assert await apply_plugin_migrations(db, "notes", [NOTES_V1, NOTES_V2]) == 1
    assert await apply_plugin_migrations(db, "notes", [NOTES_V1, NOTES_V2]) == 0
    assert await schema_version(db, "notes") == 2
    assert await schema_version(db, "other") == 0
    rows = await db.fetchall("SELECT plugin_id, version FROM plugin_schema")
    assert rows == [("notes", 2)]
    store = SQLitePluginDatabase(db, "notes")
    await store.execute("INSERT INTO notes_items (text) VALUES (?)", ("the cat is called Miso",))
    hits = await store.fetchall("SELECT rowid FROM notes_fts WHERE notes_fts MATCH ?", ("miso",))
    assert hits == [(1,)]


async def test_a_failing_step_is_rolled_back_whole_and_named(db):
    broken = "CREATE TABLE notes_tags (tag TEXT); CREATE TABL notes_oops (x);"
    with pytest.raises(PluginMigrationError, match=r"database migration 2 failed: .*syntax"):
        await apply_plugin_migrations(db, "notes", [NOTES_V1, broken])
    assert await schema_version(db, "notes") == 1  # step 1 stays
    tables = {r[0] for r in await db.fetchall("SELECT name FROM sqlite_master")}
    assert "notes_items" in tables and "notes_tags" not in tables
    # Fixed in the next release: it runs then.
    fixed = "CREATE TABLE notes_tags (tag TEXT);"
    assert await apply_plugin_migrations(db, "notes", [NOTES_V1, fixed]) == 1


async def test_a_step_without_sql_for_the_dialect_and_a_downgrade_are_refused(db):
    only_pg = {"postgresql": "CREATE TABLE notes_items (id SERIAL PRIMARY KEY)"}
    with pytest.raises(PluginMigrationError, match="migration 1 failed: it has no SQL for sqlite"):
        await apply_plugin_migrations(db, "notes", [only_pg])
    both = {"sqlite": NOTES_V1, "postgresql": "CREATE TABLE notes_items (id SERIAL)"}
    await apply_plugin_migrations(db, "notes", [both, "CREATE TABLE notes_more (x);"])
    with pytest.raises(PluginMigrationError, match="2 of its migrations applied"):
        await apply_plugin_migrations(db, "notes", [both])


def test_the_declaration_checks_its_steps():
    with pytest.raises(TypeError, match="a list of steps"):
        hark.Plugin(description="x", migrations=NOTES_V1)
    with pytest.raises(TypeError, match="unknown dialect 'mysql'"):
        hark.Plugin(description="x", migrations=[{"mysql": "CREATE TABLE x (y)"}])
    plugin = hark.Plugin(description="x", migrations=[NOTES_V1, {"sqlite": NOTES_V2}])
    assert plugin.migrations == (NOTES_V1, {"sqlite": NOTES_V2})


async def test_queries_transactions_and_rollback(db):
    await apply_plugin_migrations(db, "notes", [NOTES_V1])
    store = SQLitePluginDatabase(db, "notes")
    assert isinstance(store, PluginDatabase)
    assert store.dialect == "sqlite" and store.plugin_id == "notes"
    await store.executemany("INSERT INTO notes_items (text) VALUES (?)", [("a",), ("b",), ("c",)])
    assert await store.execute("UPDATE notes_items SET text = upper(text) WHERE id > ?", (1,)) == 2
    assert await store.fetchone("SELECT text FROM notes_items WHERE id = ?", (3,)) == ("C",)
    assert await store.fetchone("SELECT text FROM notes_items WHERE id = ?", (99,)) is None
    async with store.transaction() as tx:
        row = await tx.fetchone("INSERT INTO notes_items (text) VALUES (?) RETURNING id", ("d",))
        assert row == (4,)
        assert await tx.execute("DELETE FROM notes_items WHERE id = ?", (1,)) == 1
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await tx.execute("DELETE FROM notes_items")
            assert await tx.fetchall("SELECT id FROM notes_items") == []
            raise RuntimeError("changed my mind")
    rows = await store.fetchall("SELECT id, text FROM notes_items ORDER BY id")
    assert rows == [(2, "B"), (3, "C"), (4, "d")]


async def test_concurrent_writers_do_not_lose_rows(db):
    await apply_plugin_migrations(db, "notes", [NOTES_V1])
    store = SQLitePluginDatabase(db, "notes")

    async def write(n: int) -> None:
        async with store.transaction() as tx:
            await tx.execute("INSERT INTO notes_items (text) VALUES (?)", (f"n{n}",))
            await asyncio.sleep(0)  # another task's statement may not slip in here
            await tx.execute("INSERT INTO notes_items (text) VALUES (?)", (f"m{n}",))

    await asyncio.gather(*(write(n) for n in range(20)))
    assert await store.fetchone("SELECT count(*) FROM notes_items") == (40,)


def _runtime(tmp_path, plugins) -> Runtime:
    return Runtime(Config(data_dir=tmp_path), manager=isolated_manager(plugins))


async def test_the_runtime_applies_migrations_and_a_broken_plugin_alone_fails(tmp_path):
    good = hark.Plugin(description="Notes", migrations=[NOTES_V1])
    bad = hark.Plugin(description="Broken", migrations=["CREATE TABLE broken_x (;"])
    runtime = _runtime(tmp_path, {"notes": good, "broken": bad})
    await runtime.open()
    try:
        broken = runtime.manager.get("broken")
        assert broken.status == "error"
        assert broken.error.startswith("database migration 1 failed:")
        assert runtime.manager.get("notes").loaded
        store = runtime.plugin_database("notes")
        await store.execute("INSERT INTO notes_items (text) VALUES (?)", ("kept",))
    finally:
        await runtime.close()
    # The next start applies nothing again, and the rows are still there.
    runtime = _runtime(tmp_path, {"notes": good})
    await runtime.open()
    try:
        store = runtime.plugin_database("notes")
        assert await store.fetchall("SELECT text FROM notes_items") == [("kept",)]
    finally:
        await runtime.close()
    conn = sqlite3.connect(tmp_path / "hark.sqlite3")
    try:
        assert conn.execute("SELECT * FROM plugin_schema").fetchall() == [("notes", 1)]
    finally:
        conn.close()
