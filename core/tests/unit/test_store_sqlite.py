"""hark.store against a real database: plugin switches, provider choices, settings.

Each test that takes ``database``/``db_factory`` runs on SQLite (a file) and on
PostgreSQL (the session's throwaway server); see core/tests/conftest.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hark.store import GLOBAL, Database, PluginState, SettingsStore, SQLiteDatabase
from hark.store.migrations import MIGRATIONS


async def core_version(db: Database) -> int:
    if db.dialect == "sqlite":
        row = await db.fetchone("PRAGMA user_version")
    else:
        row = await db.fetchone("SELECT version FROM schema_version")
    return int(row[0]) if row else 0


async def tables(db: Database) -> set[str]:
    if db.dialect == "sqlite":
        rows = await db.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        rows = await db.fetchall(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        )
    return {row[0] for row in rows}


# -- database ----------------------------------------------------------------


async def test_open_creates_the_schema_and_migrates_once(db_factory) -> None:
    db = await db_factory()
    assert await core_version(db) == len(MIGRATIONS)
    assert {"plugin_state", "provider_choice", "settings", "history"} <= await tables(db)
    await db.execute("INSERT INTO settings VALUES ('n', 'global', 'k', '1')")
    await db.close()
    again = await db_factory()  # re-running migration 1 would fail: the tables exist
    assert await again.fetchall("SELECT value FROM settings") == [("1",)]
    assert await core_version(again) == len(MIGRATIONS)


async def test_the_sqlite_file_and_its_folders_are_created(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "hark.sqlite3"
    db = SQLiteDatabase(path)
    await db.open()
    try:
        assert path.is_file()
        assert await db.fetchall("PRAGMA journal_mode") == [("wal",)]
        assert db.display_url == f"sqlite:///{path}"
    finally:
        await db.close()


async def test_extra_migrations_are_appended(db_factory) -> None:
    db = await db_factory()
    await db.close()
    extra = ["CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);"]
    db = await db_factory(open=False)
    await db.open(extra)
    assert await core_version(db) == len(MIGRATIONS) + 1
    assert await db.execute("INSERT INTO notes (id, body) VALUES (?, ?)", [1, "hi"]) == 1
    assert await db.fetchall("SELECT body FROM notes") == [("hi",)]


async def test_closed_database_refuses_queries(db_factory) -> None:
    db = await db_factory(open=False)
    with pytest.raises(RuntimeError, match="not open"):
        await db.fetchall("SELECT 1")
    await db.close()  # closing twice (or unopened) is harmless
    await db.close()


async def test_rows_changed_and_rows_read(database: Database) -> None:
    rows = [("n", "global", f"k{i}", str(i)) for i in range(5)]
    await database.executemany("INSERT INTO settings VALUES (?, ?, ?, ?)", rows)
    assert await database.execute("UPDATE settings SET value = ? WHERE key <> ?", ("x", "k0")) == 4
    assert await database.execute("DELETE FROM settings WHERE key = ?", ("nope",)) == 0
    assert await database.fetchone("SELECT value FROM settings WHERE key = ?", ("k0",)) == ("0",)
    assert await database.fetchone("SELECT value FROM settings WHERE key = ?", ("k9",)) is None
    # A "?" inside a string literal is text, not a parameter.
    assert await database.fetchone("SELECT '?', CAST(? AS TEXT)", ("a",)) == ("?", "a")
    async with database.transaction() as tx:
        assert await tx.execute("DELETE FROM settings WHERE key IN (?, ?)", ("k1", "k2")) == 2
        assert await tx.fetchone("SELECT count(*) FROM settings") == (3,)
    with pytest.raises(LookupError):
        async with database.transaction() as tx:
            await tx.execute("DELETE FROM settings")
            raise LookupError("rolled back")
    assert await database.fetchone("SELECT count(*) FROM settings") == (3,)


# -- plugin state --------------------------------------------------------------


async def test_plugin_state_survives_reopening(db_factory) -> None:
    db = await db_factory()
    state = PluginState(db)
    await state.load()
    assert state.enabled(1, "tts") is None and state.choice(1, "generate") is None
    await state.set_enabled(1, "tts", False)
    await state.set_enabled(2, "tts", True)
    await state.set_enabled(GLOBAL, "twitch", False)
    await state.set_enabled(1, "tts", True)  # update in place
    await state.set_choice(1, "generate", "llm_ollama")
    await state.set_choice(1, "generate", "llm_openrouter:fast")
    await state.set_choice(GLOBAL, "synthesize", "tts_azure")
    # Snowflakes are 64-bit: BIGINT in PostgreSQL.
    await state.set_enabled(1_234_567_890_123_456_789, "tts", False)
    await db.close()

    reopened = PluginState(await db_factory())
    await reopened.load()
    assert reopened.enabled(1, "tts") is True
    assert reopened.enabled(2, "tts") is True
    assert reopened.enabled(GLOBAL, "twitch") is False
    assert reopened.enabled(3, "tts") is None
    assert reopened.enabled(1_234_567_890_123_456_789, "tts") is False
    assert reopened.choice(1, "generate") == "llm_openrouter:fast"
    assert reopened.choice(GLOBAL, "synthesize") == "tts_azure"


async def test_plugin_state_reset_deletes_rows(database: Database) -> None:
    state = PluginState(database)
    await state.set_enabled(1, "tts", False)
    await state.set_choice(1, "generate", "x")
    await state.set_enabled(1, "tts", None)
    await state.set_choice(1, "generate", None)
    assert state.enabled(1, "tts") is None and state.choice(1, "generate") is None
    assert await database.fetchall("SELECT * FROM plugin_state") == []
    assert await database.fetchall("SELECT * FROM provider_choice") == []


# -- settings ------------------------------------------------------------------


async def test_settings_fallback_guild_global_default(database: Database) -> None:
    store = SettingsStore(database)
    await store.load()
    conf = store.for_plugin("llm_ollama")
    assert store.for_plugin("llm_ollama") is conf
    conf.register(model="llama3.2", temperature=0.7)
    assert conf.guild(1).get("model") == "llama3.2"
    await conf.global_().set("model", "qwen2.5")
    assert conf.guild(1).get("model") == "qwen2.5"
    await conf.guild(1).set("model", "mistral")
    assert conf.guild(1).get("model") == "mistral"
    assert conf.guild(2).get("model") == "qwen2.5"
    assert conf.guild(None).get("model") == "qwen2.5"
    assert conf.guild(1).is_set("model") and not conf.guild(2).is_set("model")
    assert conf.guild(1).all() == {"model": "mistral", "temperature": 0.7}
    await conf.guild(1).clear("model")
    assert conf.guild(1).get("model") == "qwen2.5"
    await conf.global_().clear("model")
    assert conf.guild(1).get("model") == "llama3.2"


async def test_settings_channel_and_user_scopes_do_not_fall_back_to_guild(
    database: Database,
) -> None:
    store = SettingsStore(database)
    conf = store.for_plugin("persona")
    conf.register(persona="friendly")
    await conf.global_().set("persona", "grumpy")
    assert conf.channel(10).get("persona") == "friendly"
    await conf.channel(10).set("persona", "pirate")
    await conf.user(20).set("persona", "poet")
    assert conf.channel(10).get("persona") == "pirate"
    assert conf.user(20).get("persona") == "poet"
    assert conf.channel(11).get("persona") == "friendly"


async def test_settings_namespaces_are_separate(database: Database) -> None:
    store = SettingsStore(database)
    a, b = store.for_plugin("a"), store.for_plugin("b")
    a.register(key=1)
    b.register(key=2)
    await a.global_().set("key", 10)
    assert b.global_().get("key") == 2


async def test_settings_unknown_key_and_explicit_default(database: Database) -> None:
    store = SettingsStore(database)
    conf = store.for_plugin("x")
    with pytest.raises(KeyError, match="nope"):
        conf.guild(1).get("nope")
    assert conf.guild(1).get("nope", 5) == 5


async def test_settings_reject_values_json_cannot_store(database: Database) -> None:
    store = SettingsStore(database)
    conf = store.for_plugin("x")
    with pytest.raises(TypeError):
        conf.register(bad={1, 2})
    conf.register(ok=1)
    with pytest.raises(TypeError):
        await conf.global_().set("ok", object())
    assert conf.global_().get("ok") == 1
    assert await database.fetchall("SELECT * FROM settings") == []


async def test_settings_survive_reopening(db_factory) -> None:
    db = await db_factory()
    store = SettingsStore(db)
    await store.load()
    conf = store.for_plugin("llm")
    conf.register(model="a", stop=[])
    await conf.guild(5).set("model", "b")
    await conf.global_().set("stop", ["\n", "User:"])
    await conf.channel(6).set("extra", {"nested": [1, 2.5, None, True]})
    await db.close()

    store2 = SettingsStore(await db_factory())
    await store2.load()
    conf2 = store2.for_plugin("llm")
    conf2.register(model="a", stop=[])
    assert conf2.guild(5).get("model") == "b"
    assert conf2.guild(5).get("stop") == ["\n", "User:"]
    assert conf2.channel(6).get("extra") == {"nested": [1, 2.5, None, True]}


async def test_seeded_globals_are_overridden_by_the_database_and_restored(db_factory) -> None:
    db = await db_factory()
    store = SettingsStore(db)
    store.seed_globals("llm", {"model": "from-toml", "temperature": 0.3})
    await store.load()
    conf = store.for_plugin("llm")
    conf.register(model="default", temperature=0.7)
    assert conf.guild(1).get("model") == "from-toml"
    await conf.global_().set("model", "from-db")
    assert conf.guild(1).get("model") == "from-db"
    await db.close()

    # Next start: bot.toml is seeded again, but the owner's database value wins.
    store2 = SettingsStore(await db_factory())
    store2.seed_globals("llm", {"model": "from-toml", "temperature": 0.3})
    await store2.load()
    conf2 = store2.for_plugin("llm")
    conf2.register(model="default", temperature=0.7)
    assert conf2.guild(1).get("model") == "from-db"
    assert conf2.guild(1).get("temperature") == 0.3
    # Seeding after load must not clobber database values either.
    store2.seed_globals("llm", {"model": "late-toml"})
    assert conf2.global_().get("model") == "from-db"
    # Clearing the owner's value goes back to bot.toml, not to the registered default.
    await conf2.global_().clear("model")
    assert conf2.guild(1).get("model") == "late-toml"
    await conf2.global_().clear("temperature")  # no DB row: still the seeded value
    assert conf2.global_().get("temperature") == 0.3
