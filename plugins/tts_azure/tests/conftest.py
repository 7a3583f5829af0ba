"""Fixtures for the Azure Speech plugin's tests: a loopback Azure TTS server and
synthesizers pointed at it. Nothing here reaches the internet."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from azure_support import FAST_RETRY, KEY, PLUGIN_ID
from fake_azure import FakeAzureTTS
from hark_tts_azure import AzureSynthesizer


@pytest.fixture
async def azure() -> AsyncIterator[FakeAzureTTS]:
    async with FakeAzureTTS(key=KEY) as fake:
        yield fake


@pytest.fixture
def make_synth(azure: FakeAzureTTS, hark_closing) -> Callable[..., AzureSynthesizer]:
    """``make_synth(**kwargs)``: a synthesizer for ``azure`` (key, fast retries, plugin id),
    closed after the test.

    Keyword arguments go to :class:`AzureSynthesizer`; ``environ`` defaults to empty
    so the developer's own ``AZURE_SPEECH_*`` variables never leak in.
    """

    def make(**kwargs: Any) -> AzureSynthesizer:
        kwargs.setdefault("endpoint", azure.url)
        kwargs.setdefault("api_key", KEY)
        kwargs.setdefault("environ", {})
        synthesizer = hark_closing(AzureSynthesizer(**kwargs))
        synthesizer.plugin_id = PLUGIN_ID
        synthesizer.retry = FAST_RETRY
        return synthesizer

    return make
