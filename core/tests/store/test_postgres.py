"""The PostgreSQL backend on its own: SQL translation, errors, migrations between
processes, and the change notices that keep several processes' caches in step.

Against the session's throwaway PostgreSQL server (``postgres_url``: a fresh
database per test). "Two processes" are two Database objects on one database: each
has its own pool, LISTEN connection and origin, exactly as two ``bot run`` have.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

import hark
from hark.config import ConfigError, load_config
from hark.store import (
    Database,
    DatabaseError,
    DatabaseUnavailable,
    PluginState,
    SettingsStore,
    SQLiteDatabase,
    database_for_url,
    open_database,
)
from hark.store.migrations import MIGRATIONS
from hark.store.postgres import PostgresDatabase, numbered, rowcount


class Demo(hark.Settings):
    voice: str = hark.setting("ryan", scopes=("global", "server"), description="the voice")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def until(check: Callable[[], Any], timeout: float, what: str) -> None:
    """Wait for ``check()`` to be true; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.01)


@pytest.fixture
async def db_cleanup():
    """``db_cleanup(db)`` returns ``db`` and closes it after the test."""
    made: list[Database] = []

    def keep(db: Database) -> Any:
        made.append(db)
        return db

    yield keep
    for db in made:
        await db.close()


@pytest.fixture
async def pair(postgres_url):
    """Two processes' databases on one PostgreSQL database."""
    one, two = PostgresDatabase(postgres_url), PostgresDatabase(postgres_url)
    await one.open()
    await two.open()
    yield one, two
    await one.close()
    await two.close()


# -- translation -------------------------------------------------------------------


def test_question_marks_become_numbered_parameters_outside_quotes_and_comments():
    assert numbered("SELECT a FROM t WHERE b = ? AND c IN (?, ?)") == (
        "SELECT a FROM t WHERE b = $1 AND c IN ($2, $3)"
    )
    assert numbered("SELECT '?', 'it''s ?', ? -- why?\n, \"odd?name\" /* ? */ FROM t") == (
        "SELECT '?', 'it''s ?', $1 -- why?\n, \"odd?name\" /* ? */ FROM t"
    )
    body = "CREATE FUNCTION f() RETURNS int AS $fn$ SELECT 1 WHERE '?' = '?' $fn$ LANGUAGE sql"
    assert numbered(body + " -- ?") == body + " -- ?"
    assert numbered("SELECT $$?$$, ?::bigint") == "SELECT $$?$$, $1::bigint"
    assert numbered("SELECT 1") == "SELECT 1"


def test_the_row_count_is_read_from_the_command_status():
    assert rowcount("INSERT 0 3") == 3
    assert rowcount("UPDATE 12") == 12
    assert rowcount("DELETE 0") == 0
    assert rowcount("CREATE TABLE") == -1
    assert rowcount("SELECT 5") == -1


def test_urls_choose_the_backend_and_never_show_the_password(tmp_path):
    db = database_for_url("postgresql://hark:s3cret-pw@db.example:5432/bot")
    assert isinstance(db, PostgresDatabase) and db.dialect == "postgresql"
    assert db.display_url == "postgresql://hark:***@db.example:5432/bot"
    assert "s3cret-pw" not in repr(db)
    other = database_for_url("postgres://u:p@w@host/db?sslmode=require&password=x")
    assert other.display_url == "postgres://u:***@host/db?sslmode=require&password=***"
    lite = database_for_url(f"sqlite:///{tmp_path}/x.sqlite3")
    assert isinstance(lite, SQLiteDatabase) and lite.path == tmp_path / "x.sqlite3"
    assert database_for_url("sqlite:///data/x.sqlite3").path.as_posix() == "data/x.sqlite3"


def test_the_config_names_the_database(tmp_path):
    url = "postgresql://hark:s3cret-pw@127.0.0.1/bot"
    config = load_config(environ={"HARK_DATABASE_URL": url, "HARK_DATA_DIR": str(tmp_path)})
    assert config.database_url == url
    assert isinstance(open_database(config), PostgresDatabase)
    from hark.config import describe

    assert describe(config)["database_url"] == "postgresql://hark:***@127.0.0.1/bot"
    plain = load_config(environ={"HARK_DATA_DIR": str(tmp_path)})
    assert plain.database_url is None and plain.database_path == tmp_path / "hark.sqlite3"
    assert isinstance(open_database(plain), SQLiteDatabase)
    lite = load_config(environ={"HARK_DATABASE_URL": f"sqlite:///{tmp_path}/other.db"})
    assert lite.database_path == tmp_path / "other.db"
    with pytest.raises(ConfigError, match=r"HARK_DATABASE_URL must start with .*\*\*\*"):
        load_config(environ={"HARK_DATABASE_URL": "mysql://root:s3cret-pw@host/db"})


def test_without_asyncpg_a_postgresql_url_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "asyncpg", None)  # `import asyncpg` fails
    with pytest.raises(ConfigError, match=r"pip install 'hark\[postgresql\]'") as info:
        database_for_url("postgresql://hark:s3cret-pw@127.0.0.1/bot")
    assert "s3cret-pw" not in str(info.value)


async def test_an_unreachable_server_is_one_clear_error_without_the_password():
    db = PostgresDatabase(
        f"postgresql://hark:s3cret-pw@127.0.0.1:{free_port()}/bot", connect_timeout=5
    )
    with pytest.raises(DatabaseUnavailable) as info:
        await db.open()
    message = str(info.value)
    assert message.startswith("cannot reach the database postgresql://hark:***@127.0.0.1:")
    assert "s3cret-pw" not in message and "\n" not in message
    await db.close()


async def test_a_missing_database_is_unavailable_too(postgres_cluster):
    db = PostgresDatabase(postgres_cluster.url("no_such_database", password="s3cret-pw"))
    with pytest.raises(DatabaseUnavailable, match='"no_such_database" does not exist'):
        await db.open()


async def test_driver_errors_become_the_stores_own(postgres_url):
    db = PostgresDatabase(postgres_url)
    await db.open()
    try:
        with pytest.raises(DatabaseError) as wrong_type:
            # A text column given a number: asyncpg refuses it before sending.
            await db.execute("INSERT INTO settings VALUES (?, ?, ?, ?)", ("n", "global", "k", 1))
        assert wrong_type.value.permanent
        with pytest.raises(DatabaseError, match="syntax") as typo:
            await db.fetchall("SELEC 1")
        assert typo.value.permanent
        # The pool is fine afterwards.
        assert await db.fetchone("SELECT count(*) FROM settings") == (0,)
    finally:
        await db.close()


async def test_a_statement_that_loses_a_deadlock_is_run_again(postgres_url):
    import asyncpg

    db = PostgresDatabase(postgres_url)
    await db.open()
    other = await asyncpg.connect(postgres_url)
    try:
        rows = [("n", "global", "a", "0"), ("n", "global", "b", "0")]
        await db.executemany("INSERT INTO settings VALUES (?, ?, ?, ?)", rows)
        await other.execute("BEGIN")
        # The other session is never the one PostgreSQL picks to break the deadlock.
        await other.execute("SET LOCAL deadlock_timeout = '10s'")
        await other.execute("UPDATE settings SET value = 'other' WHERE key = 'b'")
        ours = asyncio.create_task(
            db.execute("UPDATE settings SET value = ? WHERE namespace = ?", ("ours", "n"))
        )
        await asyncio.sleep(0.3)  # ours holds row a and waits for b
        theirs = asyncio.create_task(
            other.execute("UPDATE settings SET value = 'other' WHERE key = 'a'")
        )
        await asyncio.wait_for(theirs, 10)  # ours was rolled back: a was free again
        await other.execute("COMMIT")
        assert await asyncio.wait_for(ours, 10) == 2  # run again, after their commit
        assert await db.fetchall("SELECT value FROM settings") == [("ours",), ("ours",)]
    finally:
        await other.close()
        await db.close()


# -- schema ----------------------------------------------------------------------


async def test_processes_starting_together_migrate_once(postgres_url):
    dbs = [PostgresDatabase(postgres_url) for _ in range(4)]
    try:
        await asyncio.gather(*(db.open() for db in dbs))
        assert await dbs[0].fetchall("SELECT id, version FROM schema_version") == [
            (1, len(MIGRATIONS))
        ]
        columns = await dbs[0].fetchall(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_name = 'history' ORDER BY ordinal_position"
        )
        types = dict(columns)
        assert types["id"] == types["channel_id"] == types["guild_id"] == "bigint"
        assert types["created_at"] == "double precision"
        # Ids may be given (a copy keeps them) or left to the identity column.
        await dbs[1].execute(
            "INSERT INTO history (id, channel_id, role, content, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (1000, 2**62, "user", "hi", 1.5),
        )
        row = await dbs[2].fetchone(
            "INSERT INTO history (channel_id, role, content, created_at) VALUES (?, ?, ?, ?)"
            " RETURNING id",
            (1, "user", "next", 2.0),
        )
        assert row is not None and row[0] != 1000
    finally:
        for db in dbs:
            await db.close()


async def test_the_migration_lock_lets_one_process_in_at_a_time(pair):
    one, two = pair
    inside: list[str] = []

    async def migrate(db: PostgresDatabase, name: str) -> None:
        async with db.migrating():
            inside.append(f"{name} in")
            await asyncio.sleep(0.3)
            inside.append(f"{name} out")

    await asyncio.gather(migrate(one, "a"), migrate(two, "b"))
    assert inside in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])
    # Re-entered by the task holding it (the core's migrations, then a plugin's).
    async with one.migrating(), one.migrating():
        pass


# -- change notices ---------------------------------------------------------------


async def test_two_processes_see_each_others_settings_and_switches_within_a_second(
    postgres_url, db_cleanup
):
    one = db_cleanup(PostgresDatabase(postgres_url))
    two = db_cleanup(PostgresDatabase(postgres_url))
    settings = [SettingsStore(one), SettingsStore(two)]
    states = [PluginState(one), PluginState(two)]
    for db, stores in ((one, (settings[0], states[0])), (two, (settings[1], states[1]))):
        # As the Runtime does: subscribed before opening, so nothing is missed.
        for store in stores:
            store.subscribe()
        await db.open()
        for store in stores:
            await store.load()
    confs = [s.for_plugin("llm") for s in settings]
    for conf in confs:
        conf.register(model="default")
    changed: list[int | None] = []
    states[1].watch(changed.append)

    await confs[0].guild(5).set("model", "qwen")
    await until(lambda: confs[1].guild(5).get("model") == "qwen", 1.0, "a setting")
    await confs[1].global_().set("model", "mistral")
    await until(lambda: confs[0].guild(6).get("model") == "mistral", 1.0, "a global setting")
    await confs[0].guild(5).clear("model")
    await until(lambda: confs[1].guild(5).get("model") == "mistral", 1.0, "a cleared setting")

    await states[0].set_enabled(0, "twitch", False)
    await until(lambda: states[1].enabled(0, "twitch") is False, 1.0, "a global switch")
    await states[0].set_enabled(7, "twitch", True)
    await until(lambda: states[1].enabled(7, "twitch") is True, 1.0, "a server's switch")
    await states[0].set_choice(7, "generate", "llm_ollama")
    await until(lambda: states[1].choice(7, "generate") == "llm_ollama", 1.0, "a choice")
    await states[0].set_enabled(7, "twitch", None)
    await until(lambda: states[1].enabled(7, "twitch") is None, 1.0, "a reset switch")
    # Told after the cache changed: the global switch, then server 7's twice.
    await until(lambda: len(changed) == 3, 1.0, "the watcher told")
    assert changed == [None, 7, 7]

    # Typed settings (the resolve cache) follow too.
    for store in settings:
        store.declare("demo", Demo)
    assert settings[1].resolve("demo", guild_id=5).values.voice == "ryan"
    await settings[0].set_value("demo", "voice", "sonia", "server", 5)
    await until(
        lambda: settings[1].resolve("demo", guild_id=5).values.voice == "sonia",
        1.0,
        "a typed setting",
    )


async def test_a_process_does_not_hear_its_own_notices(pair):
    one, two = pair
    heard: list[tuple[str, dict]] = []
    one.subscribe(lambda p: heard.append(("one", p)))
    two.subscribe(lambda p: heard.append(("two", p)))
    await asyncio.sleep(0.3)  # subscribed after open: each listens, then reloads once
    heard.clear()
    await one.notify({"t": "test", "k": [1]})
    async with one.transaction() as tx:
        await tx.notify({"t": "test", "k": [2]})
        tx.notify({"t": "test", "k": [2]})  # the same twice: sent once
    with pytest.raises(RuntimeError):
        async with one.transaction() as tx:
            tx.notify({"t": "test", "k": [3]})
            raise RuntimeError("rolled back: never sent")
    await until(lambda: len(heard) >= 2, 1.0, "two notices")
    await asyncio.sleep(0.2)
    assert heard == [("two", {"t": "test", "k": [1]}), ("two", {"t": "test", "k": [2]})]


async def test_after_the_notices_connection_is_lost_everything_is_reloaded(
    postgres_cluster, postgres_url, tcp_proxy
):
    """Process one reaches the server through a proxy that is cut for a while; a
    change made meanwhile is never notified to it, so after reconnecting it reloads."""
    proxy = await tcp_proxy(postgres_cluster.port)
    one, two = PostgresDatabase(proxy.url(postgres_url)), PostgresDatabase(postgres_url)
    try:
        stores = [SettingsStore(one), SettingsStore(two)]
        for db, store in zip((one, two), stores, strict=True):
            store.subscribe()
            await db.open()
            await store.load()
        confs = [s.for_plugin("llm") for s in stores]
        for conf in confs:
            conf.register(model="default")
        await confs[1].global_().set("model", "before")
        await until(lambda: confs[0].global_().get("model") == "before", 1.0, "a setting")

        await proxy.cut()
        await confs[1].global_().set("model", "during")
        await asyncio.sleep(0.5)
        assert confs[0].global_().get("model") == "before"  # unheard, read from memory
        await proxy.restore()
        await until(lambda: confs[0].global_().get("model") == "during", 5.0, "the reload")
    finally:
        await one.close()
        await two.close()


async def test_connections_terminated_by_the_server_are_replaced(pair):
    one, two = pair
    stores = [SettingsStore(one), SettingsStore(two)]
    for store in stores:
        await store.load()
    confs = [s.for_plugin("x") for s in stores]
    for conf in confs:
        conf.register(v=0)
    await asyncio.sleep(0.3)  # both LISTEN connections are up
    # Every connection of the bot's, pooled and listening (what a failover or an
    # administrator's pg_terminate_backend does).
    killed = await two.fetchall(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    assert len(killed) >= 3
    await asyncio.sleep(0.2)
    await confs[0].global_().set("v", 1)  # a fresh connection, not an error
    await until(lambda: confs[1].global_().get("v") == 1, 5.0, "the notice after reconnecting")
    assert await one.fetchone("SELECT value FROM settings") == ("1",)
