"""What the Smart Turn detector can be told, and what one speaker's state machine uses.

The core resolves each setting (default < bot.toml ``[plugin.turn_smart]`` < the
owner's bot-wide value < the server's) and generates ``!config turn_smart`` /
``/config``. The detector reads a server's values again at the start of every
utterance, so a change applies from the next one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator

import hark

FRAME_MS = 20
PER_SERVER = ("global", "server")

# From the server's voice settings (passed to ``open()`` by the voice session).
VOICE_DEFAULTS: dict[str, int] = {
    "pre_roll_ms": 300,
    "min_speech_ms": 250,
    "max_utterance_ms": 15_000,
}


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a number")
    return value


def _ms(value: Any) -> Any:
    """``"250ms"`` -> ``"250"``; ``voice`` (for ``min_speech_ms``) -> None."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "voice":
            return None
        return text.removesuffix("ms").strip()
    return _no_bool(value)


def _fraction(value: Any) -> Any:
    """``"65%"`` -> ``0.65``."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip()[:-1]) / 100
        except ValueError:
            return value
    return _no_bool(value)


Millis = Annotated[int, BeforeValidator(_ms)]
Fraction = Annotated[float, BeforeValidator(_fraction)]


class SmartTurnSettings(hark.Settings):
    pause_ms: Millis = hark.setting(
        200,
        scopes=PER_SERVER,
        ge=60,
        le=1500,
        description="silence (ms) before Smart Turn is asked whether the turn is complete",
    )
    max_wait_ms: Millis = hark.setting(
        2000,
        scopes=PER_SERVER,
        ge=200,
        le=10_000,
        description="silence (ms) after which an incomplete turn ends anyway"
        " (never below pause_ms)",
    )
    threshold: Fraction = hark.setting(
        0.5,
        scopes=PER_SERVER,
        ge=0,
        le=1,
        description="Smart Turn probability at or above which a turn is complete (70% works)",
    )
    speech_threshold: Fraction = hark.setting(
        0.5,
        scopes=PER_SERVER,
        ge=0.05,
        le=0.95,
        description="Silero probability at or above which a frame is speech",
    )
    min_speech_ms: Annotated[int | None, BeforeValidator(_ms)] = hark.setting(
        None,
        scopes=PER_SERVER,
        ge=0,
        le=5000,
        description="less speech (ms) than this is dropped (a click, a cough);"
        " none: the voice setting",
    )


@dataclass(frozen=True, slots=True)
class TurnConfig:
    """What one speaker's state machine uses for its next utterance."""

    pause_ms: int = 200
    max_wait_ms: int = 2000
    threshold: float = 0.5
    speech_threshold: float = 0.5
    min_speech_ms: int = 250
    pre_roll_ms: int = 300
    max_utterance_ms: int = 15_000

    @property
    def pause_frames(self) -> int:
        return max(1, round(self.pause_ms / FRAME_MS))


def build(settings: SmartTurnSettings, voice: Mapping[str, Any] | None = None) -> TurnConfig:
    """A speaker's config from the plugin's settings (a server's) and the voice
    session's settings (``min_speech_ms`` when the plugin's is unset, the pre-roll,
    the longest utterance)."""
    voice = dict(voice or {})
    min_speech_ms = settings.min_speech_ms
    if min_speech_ms is None:
        min_speech_ms = _voice_int(voice, "min_speech_ms")
    return TurnConfig(
        pause_ms=settings.pause_ms,
        # An incomplete turn can't end before it was first judged.
        max_wait_ms=max(settings.max_wait_ms, settings.pause_ms),
        threshold=settings.threshold,
        speech_threshold=settings.speech_threshold,
        min_speech_ms=_voice_int(voice, "min_speech_ms")
        if min_speech_ms is None
        else min_speech_ms,
        pre_roll_ms=_voice_int(voice, "pre_roll_ms"),
        max_utterance_ms=max(1000, _voice_int(voice, "max_utterance_ms")),
    )


def _voice_int(voice: Mapping[str, Any], key: str) -> int:
    try:
        return max(0, int(voice.get(key, VOICE_DEFAULTS[key])))
    except (TypeError, ValueError):
        return VOICE_DEFAULTS[key]
