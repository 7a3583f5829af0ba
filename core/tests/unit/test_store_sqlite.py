"""hark.store against a real SQLite file: plugin switches, provider choices, settings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from hark.store import GLOBAL, Database, PluginState, SettingsStore
from hark.store.database import MIGRATIONS


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "dir" / "hark.sqlite3"


@pytest.fixture
async def open_db(db_path: Path) -> AsyncIterator[Callable[[], Awaitable[Database]]]:
    """``await open_db()`` opens (again) the same file; everything is closed afterwards."""
    opened: list[Database] = []

    async def factory() -> Database:
        db = Database(db_path)
        await db.open()
        opened.append(db)
        return db

    yield factory
    for db in opened:
        await db.close()


# -- database ----------------------------------------------------------------


async def test_open_creates_the_file_and_migrates_once(open_db, db_path: Path) -> None:
    db = await open_db()
    assert db_path.stat().st_size >= 0
    assert await db.fetchall("PRAGMA user_version") == [(len(MIGRATIONS),)]
    tables = {row[0] for row in await db.fetchall("SELECT name FROM sqlite_master")}
    assert {"plugin_state", "provider_choice", "settings"} <= tables
    await db.execute("INSERT INTO settings VALUES ('n', 'global', 'k', '1')")
    await db.close()
    again = await open_db()  # re-running migration 1 would fail: the tables exist
    assert await again.fetchall("SELECT value FROM settings") == [("1",)]


async def test_extra_migrations_are_appended(db_path: Path) -> None:
    db = Database(db_path)
    await db.open()
    await db.close()
    extra = ["CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);"]
    db = Database(db_path)
    await db.open(extra)
    try:
        assert await db.fetchall("PRAGMA user_version") == [(len(MIGRATIONS) + 1,)]
        await db.execute("INSERT INTO notes (body) VALUES (?)", ["hi"])
        assert await db.fetchall("SELECT body FROM notes") == [("hi",)]
    finally:
        await db.close()


async def test_closed_database_refuses_queries(db_path: Path) -> None:
    db = Database(db_path)
    with pytest.raises(RuntimeError, match="not open"):
        await db.fetchall("SELECT 1")
    await db.close()  # closing twice (or unopened) is harmless


# -- plugin state --------------------------------------------------------------


async def test_plugin_state_survives_reopening(open_db) -> None:
    db = await open_db()
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
    await db.close()

    reopened = PluginState(await open_db())
    await reopened.load()
    assert reopened.enabled(1, "tts") is True
    assert reopened.enabled(2, "tts") is True
    assert reopened.enabled(GLOBAL, "twitch") is False
    assert reopened.enabled(3, "tts") is None
    assert reopened.choice(1, "generate") == "llm_openrouter:fast"
    assert reopened.choice(GLOBAL, "synthesize") == "tts_azure"


async def test_plugin_state_reset_deletes_rows(open_db) -> None:
    db = await open_db()
    state = PluginState(db)
    await state.set_enabled(1, "tts", False)
    await state.set_choice(1, "generate", "x")
    await state.set_enabled(1, "tts", None)
    await state.set_choice(1, "generate", None)
    assert state.enabled(1, "tts") is None and state.choice(1, "generate") is None
    assert await db.fetchall("SELECT * FROM plugin_state") == []
    assert await db.fetchall("SELECT * FROM provider_choice") == []


# -- settings ------------------------------------------------------------------


async def test_settings_fallback_guild_global_default(open_db) -> None:
    store = SettingsStore(await open_db())
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


async def test_settings_channel_and_user_scopes_do_not_fall_back_to_guild(open_db) -> None:
    store = SettingsStore(await open_db())
    conf = store.for_plugin("persona")
    conf.register(persona="friendly")
    await conf.global_().set("persona", "grumpy")
    assert conf.channel(10).get("persona") == "friendly"
    await conf.channel(10).set("persona", "pirate")
    await conf.user(20).set("persona", "poet")
    assert conf.channel(10).get("persona") == "pirate"
    assert conf.user(20).get("persona") == "poet"
    assert conf.channel(11).get("persona") == "friendly"


async def test_settings_namespaces_are_separate(open_db) -> None:
    store = SettingsStore(await open_db())
    a, b = store.for_plugin("a"), store.for_plugin("b")
    a.register(key=1)
    b.register(key=2)
    await a.global_().set("key", 10)
    assert b.global_().get("key") == 2


async def test_settings_unknown_key_and_explicit_default(open_db) -> None:
    store = SettingsStore(await open_db())
    conf = store.for_plugin("x")
    with pytest.raises(KeyError, match="nope"):
        conf.guild(1).get("nope")
    assert conf.guild(1).get("nope", 5) == 5


async def test_settings_reject_values_json_cannot_store(open_db) -> None:
    db = await open_db()
    store = SettingsStore(db)
    conf = store.for_plugin("x")
    with pytest.raises(TypeError):
        conf.register(bad={1, 2})
    conf.register(ok=1)
    with pytest.raises(TypeError):
        await conf.global_().set("ok", object())
    assert conf.global_().get("ok") == 1
    assert await db.fetchall("SELECT * FROM settings") == []


async def test_settings_survive_reopening(open_db) -> None:
    db = await open_db()
    store = SettingsStore(db)
    await store.load()
    conf = store.for_plugin("llm")
    conf.register(model="a", stop=[])
    await conf.guild(5).set("model", "b")
    await conf.global_().set("stop", ["\n", "User:"])
    await conf.channel(6).set("extra", {"nested": [1, 2.5, None, True]})
    await db.close()

    store2 = SettingsStore(await open_db())
    await store2.load()
    conf2 = store2.for_plugin("llm")
    conf2.register(model="a", stop=[])
    assert conf2.guild(5).get("model") == "b"
    assert conf2.guild(5).get("stop") == ["\n", "User:"]
    assert conf2.channel(6).get("extra") == {"nested": [1, 2.5, None, True]}


async def test_seeded_globals_are_overridden_by_the_database_and_restored(open_db) -> None:
    db = await open_db()
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
    store2 = SettingsStore(await open_db())
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
