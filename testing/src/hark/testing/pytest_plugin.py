"""pytest fixtures for Hark and its plugins (registered through the ``pytest11`` entry point).

- ``discord_server``: a started :class:`~hark.testing.discord.FakeDiscord`.
- ``hark_harness_factory``: build :class:`~hark.testing.harness.BotHarness` objects
  (each with its own loopback server and data dir); closed after the test.
- ``hark_plugin_manager``: an isolated plugin manager (core plugin only; add yours).
- ``hark_settings_store``: the bot's :class:`~hark.store.SettingsStore` on a fresh
  SQLite database (``.for_plugin("my_plugin")`` gives a plugin's settings).
- ``hark_closing``: ``hark_closing(obj)`` returns ``obj`` and awaits ``obj.aclose()``
  after the test (providers built in a test, with their HTTP clients).
- ``postgres_cluster``: one throwaway PostgreSQL server per session
  (:class:`~hark.testing.postgres.PostgresCluster`); ``postgres_url``: a fresh,
  empty database on it for one test, as a ``postgresql://`` URL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import pytest

T = TypeVar("T")


@pytest.fixture
async def discord_server() -> AsyncIterator[Any]:
    from hark.testing.discord import FakeDiscord

    server = FakeDiscord()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
def hark_plugin_manager():
    from hark.testing.harness import isolated_manager

    return isolated_manager()


@pytest.fixture
async def hark_harness_factory(tmp_path) -> AsyncIterator[Callable[..., Any]]:
    """``await factory(plugins={"id": module}, config={...})`` -> a started BotHarness."""
    from hark.testing.harness import BotHarness

    made: list[BotHarness] = []

    async def factory(**kwargs: Any) -> BotHarness:
        harness = BotHarness(tmp_path / f"data{len(made)}", **kwargs)
        made.append(harness)
        await harness.start()
        return harness

    try:
        yield factory
    finally:
        for harness in reversed(made):
            await harness.close()


@pytest.fixture
async def hark_settings_store(tmp_path) -> AsyncIterator[Any]:
    """The bot's settings store on a fresh SQLite database in ``tmp_path``."""
    from hark.store import SettingsStore, SQLiteDatabase

    db = SQLiteDatabase(tmp_path / "hark.sqlite3")
    await db.open()
    store = SettingsStore(db)
    await store.load()
    try:
        yield store
    finally:
        await db.close()


@pytest.fixture(scope="session")
def postgres_cluster() -> Any:
    """A PostgreSQL server of the session's own (initdb + pg_ctl on a free port)."""
    from hark.testing.postgres import PostgresCluster

    # Its own folder under /tmp, not pytest's tmp dir: under root that is 0700, and
    # the server runs as the postgres user.
    cluster = PostgresCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def postgres_url(postgres_cluster) -> str:
    """A new, empty database on the session's PostgreSQL server."""
    return await postgres_cluster.create_database()


@pytest.fixture
async def hark_closing() -> AsyncIterator[Callable[[T], T]]:
    """``hark_closing(obj)``: ``obj``, whose ``aclose()`` is awaited after the test
    (in the order they were passed)."""
    made: list[Any] = []

    def closing(obj: T) -> T:
        made.append(obj)
        return obj

    yield closing
    for obj in made:
        await obj.aclose()
