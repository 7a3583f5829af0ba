"""Fixtures for the ElevenLabs plugin's tests: a loopback ElevenLabs server and
synthesizers pointed at it through the real ``elevenlabs`` client. Nothing here
reaches the internet."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from elevenlabs_support import FAST_RETRY, KEY, PLUGIN_ID, RACHEL
from hark_tts_elevenlabs import ElevenLabsSynthesizer
from hark_tts_elevenlabs.testing import FakeElevenLabs


@pytest.fixture
async def server() -> AsyncIterator[FakeElevenLabs]:
    async with FakeElevenLabs(api_key=KEY) as fake:
        yield fake


@pytest.fixture
def make_synth(server: FakeElevenLabs, hark_closing) -> Callable[..., ElevenLabsSynthesizer]:
    """``make_synth(**kwargs)``: a synthesizer for ``server`` (key, voice, fast retries),
    closed after the test.

    Keyword arguments go to :class:`ElevenLabsSynthesizer`; ``environ`` defaults to
    empty so the developer's own ``ELEVENLABS_*`` variables never leak in.
    """

    def make(**kwargs: Any) -> ElevenLabsSynthesizer:
        retry = kwargs.pop("retry", FAST_RETRY)
        kwargs.setdefault("base_url", server.url)
        kwargs.setdefault("api_key", KEY)
        kwargs.setdefault("voice_id", RACHEL)
        kwargs.setdefault("environ", {})
        synth = hark_closing(ElevenLabsSynthesizer(**kwargs))
        synth.plugin_id = PLUGIN_ID
        synth.retry = retry
        return synth

    return make
