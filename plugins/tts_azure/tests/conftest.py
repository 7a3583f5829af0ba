"""Fixtures for the Azure Speech plugin's tests: a loopback Azure TTS server and
synthesizers pointed at it. Nothing here reaches the internet."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from azure_support import FAST_RETRY, KEY, PLUGIN_ID
from hark_tts_azure import AzureSynthesizer
from hark_tts_azure.testing import FakeAzureTTS

from hark.store import Database, SettingsStore


@pytest.fixture
async def azure() -> AsyncIterator[FakeAzureTTS]:
    async with FakeAzureTTS(key=KEY) as fake:
        yield fake


@pytest.fixture
async def make_synth(azure: FakeAzureTTS) -> AsyncIterator[Callable[..., AzureSynthesizer]]:
    """``make_synth(**kwargs)``: a synthesizer for ``azure`` (key, fast retries, plugin id).

    Keyword arguments go to :class:`AzureSynthesizer`; ``environ`` defaults to empty
    so the developer's own ``AZURE_SPEECH_*`` variables never leak in.
    """
    made: list[AzureSynthesizer] = []

    def make(**kwargs: Any) -> AzureSynthesizer:
        kwargs.setdefault("endpoint", azure.url)
        kwargs.setdefault("api_key", KEY)
        kwargs.setdefault("environ", {})
        synthesizer = AzureSynthesizer(**kwargs)
        synthesizer.plugin_id = PLUGIN_ID
        synthesizer.retry = FAST_RETRY
        made.append(synthesizer)
        return synthesizer

    yield make
    for synthesizer in made:
        await synthesizer.aclose()


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
