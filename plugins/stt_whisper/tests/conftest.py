"""Fixtures for the Whisper plugin's tests: the real bundled model (loaded once per
session), real synthesized speech, and a loopback fake of OpenAI's transcription API.
Nothing here reaches the internet."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from fake_openai_audio import FakeTranscriptionServer
from hark_stt_whisper import LocalWhisperTranscriber, OpenAIWhisperTranscriber
from hark_stt_whisper.models import BUNDLED, CACHE, ModelKey
from whisper_support import (
    FAST_RETRY,
    KEY,
    KITCHEN,
    NAME_SENTENCE,
    PLUGIN_ID,
    Speaker,
    environ_for,
)

_ENV_PREFIXES = ("WHISPER_", "OPENAI_")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch):
    """The developer's own WHISPER_*/OPENAI_* variables never leak into a test, and no
    test may download a model."""
    for name in list(os.environ):
        if name.startswith(_ENV_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.setenv("WHISPER_OFFLINE", "1")


@pytest.fixture(scope="session")
def speaker() -> Speaker:
    speaker = Speaker()
    if speaker.source is None:
        pytest.skip("real speech needs espeak-ng (apt-get install espeak-ng) or tts_piper")
    for text in (KITCHEN, NAME_SENTENCE):  # made once, up front
        speaker.say(text)
    return speaker


@pytest.fixture(scope="session")
def whisper_model() -> Any:
    """The bundled tiny.en, loaded once for the whole session into the process cache
    every default-configured local transcriber uses."""
    return CACHE.get(ModelKey.of(BUNDLED), offline=True)


@pytest.fixture
def make_local() -> Callable[..., LocalWhisperTranscriber]:
    """``make_local(**settings)``: a local transcriber (offline, plugin id set) whose
    environment holds ``settings`` (by field name: ``model=`` is WHISPER_MODEL...)."""

    def make(*, cache=None, **settings: Any) -> LocalWhisperTranscriber:
        settings.setdefault("offline", True)
        transcriber = LocalWhisperTranscriber(environ=environ_for(**settings), cache=cache)
        transcriber.plugin_id = PLUGIN_ID
        return transcriber

    return make


@pytest.fixture
async def server() -> AsyncIterator[FakeTranscriptionServer]:
    async with FakeTranscriptionServer(api_key=KEY) as fake:
        yield fake


@pytest.fixture
def make_remote(
    server: FakeTranscriptionServer, hark_closing
) -> Callable[..., OpenAIWhisperTranscriber]:
    """``make_remote(**settings)``: an OpenAI transcriber for ``server`` (key, fast
    retries), closed after the test; ``api_key=`` is OPENAI_API_KEY."""

    def make(**settings: Any) -> OpenAIWhisperTranscriber:
        settings.setdefault("openai_base_url", server.base_url)
        settings.setdefault("api_key", KEY)
        transcriber = hark_closing(OpenAIWhisperTranscriber(environ=environ_for(**settings)))
        transcriber.plugin_id = PLUGIN_ID
        transcriber.retry = FAST_RETRY
        return transcriber

    return make
