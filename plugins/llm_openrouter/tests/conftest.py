"""Fixtures for the OpenRouter plugin's tests: a loopback OpenAI-compatible server and
generators pointed at it. Nothing here reaches the internet."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from hark_llm_openrouter import OpenRouterGenerator
from hark_llm_openrouter.testing import FakeOpenAIServer
from openrouter_support import FAST_RETRY, KEY, PLUGIN_ID

from hark.store import Database, SettingsStore


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer(api_key=KEY) as fake:
        yield fake


@pytest.fixture
async def make_generator(
    server: FakeOpenAIServer,
) -> AsyncIterator[Callable[..., OpenRouterGenerator]]:
    """``make_generator(**kwargs)``: a generator for ``server`` (key, fast retries, plugin id).

    Keyword arguments go to :class:`OpenRouterGenerator`; ``environ`` defaults to
    empty so the developer's own ``OPENROUTER_*`` variables never leak in.
    """
    made: list[OpenRouterGenerator] = []

    def make(**kwargs: Any) -> OpenRouterGenerator:
        kwargs.setdefault("base_url", server.base_url)
        kwargs.setdefault("api_key", KEY)
        kwargs.setdefault("environ", {})
        generator = OpenRouterGenerator(**kwargs)
        generator.plugin_id = PLUGIN_ID
        generator.retry = FAST_RETRY
        made.append(generator)
        return generator

    yield make
    for generator in made:
        await generator.aclose()


@pytest.fixture
async def settings_store(tmp_path) -> AsyncIterator[SettingsStore]:
    """The bot's settings store on a fresh SQLite database."""
    db = Database(tmp_path / "hark.sqlite3")
    await db.open()
    store = SettingsStore(db)
    await store.load()
    try:
        yield store
    finally:
        await db.close()
