"""Fixtures for the ElevenLabs plugin's tests: a loopback ElevenLabs server and
synthesizers pointed at it through the real ``elevenlabs`` client. Nothing here
reaches the internet."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from elevenlabs_support import FAST_RETRY, KEY, PLUGIN_ID, RACHEL
from fake_elevenlabs import FakeElevenLabs
from hark_tts_elevenlabs import ElevenLabsSynthesizer


@pytest.fixture
async def server() -> AsyncIterator[FakeElevenLabs]:
    async with FakeElevenLabs(api_key=KEY) as fake:
        yield fake


@pytest.fixture
def make_synth(server: FakeElevenLabs, hark_closing) -> Callable[..., ElevenLabsSynthesizer]:
    """``make_synth(**kwargs)``: a synthesizer for ``server`` (key, voice, fast retries),
    closed after the test.

    Keyword arguments go to :class:`ElevenLabsSynthesizer`; ``environ`` defaults to
    empty so the developer's own ``ELEVENLABS_*`` variables never leak in. ``voice_id``
    and ``model`` are settings: they become its environment layer
    (``ELEVENLABS_VOICE_ID``, ``ELEVENLABS_MODEL``).
    """

    def make(**kwargs: Any) -> ElevenLabsSynthesizer:
        retry = kwargs.pop("retry", FAST_RETRY)
        environ = dict(kwargs.pop("environ", {}))
        environ.setdefault("ELEVENLABS_VOICE_ID", kwargs.pop("voice_id", RACHEL))
        if "model" in kwargs:
            environ["ELEVENLABS_MODEL"] = kwargs.pop("model")
        kwargs["environ"] = environ
        kwargs.setdefault("base_url", server.url)
        kwargs.setdefault("api_key", KEY)
        synth = hark_closing(ElevenLabsSynthesizer(**kwargs))
        synth.plugin_id = PLUGIN_ID
        synth.retry = retry
        return synth

    return make
