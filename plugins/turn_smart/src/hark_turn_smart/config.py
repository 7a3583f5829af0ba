"""Settings of the Smart Turn detector: defaults, limits, and how a server's values
are resolved (the plugin's namespace, ``[plugin.turn_smart]`` in bot.toml, or
``!smartturn set``)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("hark.provider.turn_smart")

FRAME_MS = 20

#: The plugin's settings. ``min_speech_ms = None`` means the server's voice setting
#: of the same name (``!voice``), so both detectors drop the same clicks by default.
DEFAULT_SETTINGS: dict[str, Any] = {
    "pause_ms": 200,
    "max_wait_ms": 2000,
    "threshold": 0.5,
    "speech_threshold": 0.5,
    "min_speech_ms": None,
}

#: What each setting means, for ``!smartturn`` and the README.
DESCRIPTIONS: dict[str, str] = {
    "pause_ms": "silence before Smart Turn is asked whether the turn is complete",
    "max_wait_ms": "silence after which an incomplete turn ends anyway",
    "threshold": "Smart Turn probability at or above which a turn is complete",
    "speech_threshold": "Silero probability at or above which a frame is speech",
    "min_speech_ms": "less speech than this is dropped (a click, a cough); unset: `!voice`'s",
}

# key -> (type, lowest, highest). Integers are milliseconds.
_LIMITS: dict[str, tuple[type, float, float]] = {
    "pause_ms": (int, 60, 1500),
    "max_wait_ms": (int, 200, 10_000),
    "threshold": (float, 0.0, 1.0),
    "speech_threshold": (float, 0.05, 0.95),
    "min_speech_ms": (int, 0, 5000),
}

# From the server's voice settings (passed to ``open()`` by the voice session).
VOICE_DEFAULTS: dict[str, int] = {
    "pre_roll_ms": 300,
    "min_speech_ms": 250,
    "max_utterance_ms": 15_000,
}


def check(key: str, value: Any) -> Any:
    """``value`` as the setting ``key`` stores it; ``ValueError`` (a sentence) if it can't be."""
    if key not in _LIMITS:
        raise ValueError(f"there is no setting `{key}`; one of: {', '.join(DEFAULT_SETTINGS)}")
    if value is None and DEFAULT_SETTINGS[key] is None:
        return None
    kind, low, high = _LIMITS[key]
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number):
        raise ValueError(f"`{key}` takes a number from {low:g} to {high:g}")
    if kind is int:
        if number != int(number):
            raise ValueError(f"`{key}` takes a whole number of milliseconds")
        number = int(number)
    if not low <= number <= high:
        raise ValueError(f"`{key}` must be from {low:g} to {high:g}")
    return number


def parse(key: str, text: str) -> Any:
    """A value typed in Discord ("250", "0.6", "250ms", "60%"); ``ValueError`` if bad."""
    cleaned = text.strip().lower()
    if key == "min_speech_ms" and cleaned in ("default", "voice", "none", "unset"):
        return None
    if key in _LIMITS and _LIMITS[key][0] is int:
        cleaned = cleaned.removesuffix("ms").strip()
    elif cleaned.endswith("%"):
        try:
            return check(key, float(cleaned[:-1]) / 100)
        except ValueError as exc:
            raise ValueError(str(exc)) from None
    try:
        value: Any = float(cleaned)
    except ValueError:
        value = cleaned
    return check(key, value)


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


def resolve(setting: Callable[[str], Any], voice: Mapping[str, Any] | None = None) -> TurnConfig:
    """A speaker's config from the plugin's settings (``setting(key)``, already scoped to
    the server) and the voice session's settings. A stored value that is out of range
    (edited by hand in the database) falls back to the default, with a warning."""
    voice = dict(voice or {})
    values: dict[str, Any] = {}
    for key, default in DEFAULT_SETTINGS.items():
        raw = setting(key)
        try:
            values[key] = check(key, raw)
        except ValueError as exc:
            log.warning("turn_smart: ignoring %s = %r (%s)", key, raw, exc)
            values[key] = default
    if values["min_speech_ms"] is None:
        values["min_speech_ms"] = _voice_int(voice, "min_speech_ms")
    # An incomplete turn can't end before it was first judged.
    values["max_wait_ms"] = max(values["max_wait_ms"], values["pause_ms"])
    return TurnConfig(
        **values,
        pre_roll_ms=_voice_int(voice, "pre_roll_ms"),
        max_utterance_ms=max(1000, _voice_int(voice, "max_utterance_ms")),
    )


def _voice_int(voice: Mapping[str, Any], key: str) -> int:
    try:
        return max(0, int(voice.get(key, VOICE_DEFAULTS[key])))
    except (TypeError, ValueError):
        return VOICE_DEFAULTS[key]
