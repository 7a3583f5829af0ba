"""Plugins' own tables: hark.Plugin(migrations=...), plugin_schema, host.database().

The tests taking ``database`` run on SQLite and on PostgreSQL (core/tests/conftest.py).
"""

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
    BotPluginDatabase,
    PluginMigrationError,
    apply_plugin_migrations,
    schema_version,
    split_statements,
)
from hark.testing.harness import isolated_manager

NOTES_V1 = "CREATE TABLE notes_items (id INTEGER PRIMARY KEY, text TEXT NOT NULL);"
NOTES_V2 = {
    "sqlite": """
    -- full-text search over the notes, kept in step by triggers
    CREATE VIRTUAL TABLE notes_fts USING fts5(text, content='notes_items', content_rowid='id');
    CREATE TRIGGER notes_ai AFTER INSERT ON notes_items BEGIN
        INSERT INTO notes_fts (rowid, text) VALUES (new.id, new.text);
    END;
""",
    # A function body with ";" inside $$ quotes: one statement to PostgreSQL.
    "postgresql": """
    ALTER TABLE notes_items ADD COLUMN words tsvector;
    CREATE FUNCTION notes_words() RETURNS trigger AS $$
    BEGIN
        NEW.words := to_tsvector('english', NEW.text);
        RETURN NEW;
    END;
    $$ LANGUAGE plpgsql;
    CREATE TRIGGER notes_ai BEFORE INSERT OR UPDATE ON notes_items
        FOR EACH ROW EXECUTE FUNCTION notes_words();
""",
}
SEARCH = {
    "sqlite": "SELECT rowid FROM notes_fts WHERE notes_fts MATCH ?",
    "postgresql": "SELECT id FROM notes_items WHERE words @@ to_tsquery('english', ?)",
}


async def table_names(db: Database) -> set[str]:
    if db.dialect == "sqlite":
        rows = await db.fetchall("SELECT name FROM sqlite_master")
    else:
        rows = await db.fetchall("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {r[0] for r in rows}


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


async def test_steps_run_once_each_and_the_version_is_kept_per_plugin(database: Database):
    db = database
    assert await apply_plugin_migrations(db, "notes", [NOTES_V1]) == 1
    assert await schema_version(db, "notes") == 1
    # A later version of the plugin adds a step: only that one runs.
    assert await apply_plugin_migrations(db, "notes", [NOTES_V1, NOTES_V2]) == 1
    assert await apply_plugin_migrations(db, "notes", [NOTES_V1, NOTES_V2]) == 0
    assert await schema_version(db, "notes") == 2
    assert await schema_version(db, "other") == 0
    rows = await db.fetchall("SELECT plugin_id, version FROM plugin_schema")
    assert rows == [("notes", 2)]
    store = BotPluginDatabase(db, "notes")
    assert store.dialect == db.dialect
    await store.execute(
        "INSERT INTO notes_items (id, text) VALUES (?, ?)", (1, "the cat is called Miso")
    )
    assert await store.fetchall(SEARCH[db.dialect], ("miso",)) == [(1,)]


async def test_processes_starting_together_apply_each_step_once(db_factory):
    """Two databases objects (as two processes would) migrating at the same moment."""
    one, two = await db_factory(), await db_factory()
    steps = [NOTES_V1, "CREATE TABLE notes_tags (tag TEXT);"]
    done = await asyncio.gather(
        apply_plugin_migrations(one, "notes", steps), apply_plugin_migrations(two, "notes", steps)
    )
    assert sum(done) == 2  # each step ran in one of them, never in both
    assert await schema_version(one, "notes") == 2


async def test_a_failing_step_is_rolled_back_whole_and_named(database: Database):
    db = database
    broken = "CREATE TABLE notes_tags (tag TEXT); CREATE TABL notes_oops (x INTEGER);"
    with pytest.raises(PluginMigrationError, match=r"database migration 2 failed: .*syntax"):
        await apply_plugin_migrations(db, "notes", [NOTES_V1, broken])
    assert await schema_version(db, "notes") == 1  # step 1 stays
    names = await table_names(db)
    assert "notes_items" in names and "notes_tags" not in names
    # Fixed in the next release: it runs then.
    fixed = "CREATE TABLE notes_tags (tag TEXT);"
    assert await apply_plugin_migrations(db, "notes", [NOTES_V1, fixed]) == 1


async def test_a_step_without_sql_for_the_dialect_and_a_downgrade_are_refused(
    database: Database,
):
    db = database
    other = "postgresql" if db.dialect == "sqlite" else "sqlite"
    only_other = {other: "CREATE TABLE notes_items (id INTEGER)"}
    with pytest.raises(
        PluginMigrationError, match=f"migration 1 failed: it has no SQL for {db.dialect}"
    ):
        await apply_plugin_migrations(db, "notes", [only_other])
    both = {"sqlite": NOTES_V1, "postgresql": "CREATE TABLE notes_items (id BIGINT)"}
    await apply_plugin_migrations(db, "notes", [both, "CREATE TABLE notes_more (x TEXT);"])
    with pytest.raises(PluginMigrationError, match="2 of its migrations applied"):
        await apply_plugin_migrations(db, "notes", [both])


def test_the_declaration_checks_its_steps():
    with pytest.raises(TypeError, match="a list of steps"):
        hark.Plugin(description="x", migrations=NOTES_V1)
    with pytest.raises(TypeError, match="unknown dialect 'mysql'"):
        hark.Plugin(description="x", migrations=[{"mysql": "CREATE TABLE x (y)"}])
    plugin = hark.Plugin(description="x", migrations=[NOTES_V1, {"sqlite": NOTES_V2["sqlite"]}])
    assert plugin.migrations == (NOTES_V1, {"sqlite": NOTES_V2["sqlite"]})


async def test_queries_transactions_and_rollback(database: Database):
    await apply_plugin_migrations(database, "notes", [NOTES_V1])
    store = BotPluginDatabase(database, "notes")
    assert isinstance(store, PluginDatabase)
    assert store.dialect == database.dialect and store.plugin_id == "notes"
    await store.executemany(
        "INSERT INTO notes_items (id, text) VALUES (?, ?)", [(1, "a"), (2, "b"), (3, "c")]
    )
    assert await store.execute("UPDATE notes_items SET text = upper(text) WHERE id > ?", (1,)) == 2
    assert await store.fetchone("SELECT text FROM notes_items WHERE id = ?", (3,)) == ("C",)
    assert await store.fetchone("SELECT text FROM notes_items WHERE id = ?", (99,)) is None
    async with store.transaction() as tx:
        row = await tx.fetchone(
            "INSERT INTO notes_items (id, text) VALUES (?, ?) RETURNING id", (4, "d")
        )
        assert row == (4,)
        assert await tx.execute("DELETE FROM notes_items WHERE id = ?", (1,)) == 1
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await tx.execute("DELETE FROM notes_items")
            assert await tx.fetchall("SELECT id FROM notes_items") == []
            raise RuntimeError("changed my mind")
    rows = await store.fetchall("SELECT id, text FROM notes_items ORDER BY id")
    assert rows == [(2, "B"), (3, "C"), (4, "d")]


async def test_statement_errors_are_the_stores_own(database: Database):
    from hark.store import DatabaseError

    await apply_plugin_migrations(database, "notes", [NOTES_V1])
    store = BotPluginDatabase(database, "notes")
    await store.execute("INSERT INTO notes_items (id, text) VALUES (?, ?)", (1, "a"))
    with pytest.raises(DatabaseError) as duplicate:
        await store.execute("INSERT INTO notes_items (id, text) VALUES (?, ?)", (1, "b"))
    assert duplicate.value.permanent
    with pytest.raises(DatabaseError) as typo:
        await store.fetchall("SELEC id FROM notes_items")
    assert typo.value.permanent and "syntax" in str(typo.value)


async def test_concurrent_writers_do_not_lose_rows(database: Database):
    await apply_plugin_migrations(database, "notes", [NOTES_V1])
    store = BotPluginDatabase(database, "notes")

    async def write(n: int) -> None:
        async with store.transaction() as tx:
            await tx.execute("INSERT INTO notes_items (id, text) VALUES (?, ?)", (n, f"n{n}"))
            await asyncio.sleep(0)  # another task's statement may not slip in here
            await tx.execute("INSERT INTO notes_items (id, text) VALUES (?, ?)", (100 + n, f"m{n}"))

    await asyncio.gather(*(write(n) for n in range(20)))
    assert await store.fetchone("SELECT count(*) FROM notes_items") == (40,)


def _runtime(tmp_path, plugins, database_url: str | None = None) -> Runtime:
    config = Config(data_dir=tmp_path, database_url=database_url)
    return Runtime(config, manager=isolated_manager(plugins))


async def test_the_runtime_applies_migrations_and_a_broken_plugin_alone_fails(
    tmp_path, database_url: str
):
    good = hark.Plugin(description="Notes", migrations=[NOTES_V1])
    bad = hark.Plugin(description="Broken", migrations=["CREATE TABLE broken_x (;"])
    runtime = _runtime(tmp_path, {"notes": good, "broken": bad}, database_url)
    await runtime.open()
    try:
        broken = runtime.manager.get("broken")
        assert broken.status == "error"
        assert broken.error.startswith("database migration 1 failed:")
        assert runtime.manager.get("notes").loaded
        store = runtime.plugin_database("notes")
        assert store.dialect == runtime.db.dialect
        await store.execute("INSERT INTO notes_items (id, text) VALUES (?, ?)", (1, "kept"))
    finally:
        await runtime.close()
    # The next start applies nothing again, and the rows are still there.
    runtime = _runtime(tmp_path, {"notes": good}, database_url)
    await runtime.open()
    try:
        store = runtime.plugin_database("notes")
        assert await store.fetchall("SELECT text FROM notes_items") == [("kept",)]
        assert await runtime.db.fetchall("SELECT * FROM plugin_schema") == [("notes", 1)]
    finally:
        await runtime.close()


async def test_the_default_runtime_database_is_the_sqlite_file_in_the_data_dir(tmp_path):
    runtime = _runtime(tmp_path, {"notes": hark.Plugin(description="N", migrations=[NOTES_V1])})
    await runtime.open()
    await runtime.close()
    conn = sqlite3.connect(tmp_path / "hark.sqlite3")
    try:
        assert conn.execute("SELECT * FROM plugin_schema").fetchall() == [("notes", 1)]
    finally:
        conn.close()
