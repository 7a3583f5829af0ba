"""Fixtures for the Smart Turn tests: real speech from espeak-ng and the real bundled
models, loaded once per session."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from hark_turn_smart import SmartTurnDetector
from smart_turn_speech import Speaker, espeak

from hark import AudioClip


@pytest.fixture(scope="session")
def say() -> Callable[..., AudioClip]:
    """``say(text, rate=150)``: espeak speech, made once per text per session."""
    cache: dict[tuple[str, int], AudioClip] = {}

    def make(text: str, rate: int = 150) -> AudioClip:
        if (text, rate) not in cache:
            cache[text, rate] = espeak(text, rate=rate)
        return cache[text, rate]

    return make


@pytest.fixture(scope="session")
def session_detector() -> SmartTurnDetector:
    """One detector with both models loaded, for the whole session."""
    detector = SmartTurnDetector()
    detector.plugin_id = "turn_smart"
    detector.models().warm()
    return detector


@pytest.fixture
def detector(session_detector: SmartTurnDetector) -> Iterator[SmartTurnDetector]:
    """The session's detector with its default settings (no database)."""
    session_detector.settings = None
    yield session_detector
    session_detector.settings = None


@pytest.fixture
def settings(hark_settings_store, detector: SmartTurnDetector):
    """``await settings(guild_id, key, value)``: a server's value, as `!config turn_smart`
    stores it, in a fresh database bound to ``detector``."""
    detector.bind(hark_settings_store.for_plugin("turn_smart"))

    async def set_value(guild_id: int, key: str, value: object) -> None:
        await hark_settings_store.set_value("turn_smart", key, value, "server", guild_id)

    return set_value


@pytest.fixture
def speaker(detector: SmartTurnDetector) -> Callable[..., Speaker]:
    """``speaker(user_id=1, guild_id=None, **voice_settings)``: a driven speaker."""

    def make(user_id: int = 1, guild_id: int | None = None, **voice: object) -> Speaker:
        return Speaker(detector.open(user_id, guild_id=guild_id, **voice))

    return make
