"""What the plugin can be told: its settings model and its secret.

The core resolves each value (default < bot.toml ``[plugin.tts_elevenlabs]`` < the
environment variable < the owner's bot-wide value < the server's), generates
``!config tts_elevenlabs`` / ``/config``, and hands every synthesis its server's
values. The voice, model and voice settings are per server; where the API is and
how long to wait for it are bot-wide.

The keys are the ones the plugin's old ``!elevenlabs voice`` / ``!elevenlabs set``
commands stored, so a database written before keeps every server's choices.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, ConfigDict

import hark

DEFAULT_BASE_URL = "https://api.elevenlabs.io"
DEFAULT_MODEL = "eleven_multilingual_v2"
DEFAULT_TIMEOUT = 30.0

PER_SERVER = ("global", "server")
BOT_WIDE = ("global",)

ELEVENLABS_KEY = hark.Secret(
    "ELEVENLABS_API_KEY", "an API key of your ElevenLabs account (Developers → API keys)"
)


def _model_id(text: str) -> str:
    if not text or any(c.isspace() for c in text):
        raise ValueError("must be a model id such as eleven_flash_v2_5")
    return text


def _base_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http(s) URL such as {DEFAULT_BASE_URL}")
    return text.rstrip("/")  # a trailing slash is not part of the base


BaseUrl = Annotated[str, AfterValidator(_base_url)]
ModelId = Annotated[str, AfterValidator(_model_id)]


class ElevenLabsSettings(hark.Settings):
    model_config = ConfigDict(str_strip_whitespace=True)

    voice_id: str | None = hark.setting(
        None,
        env="ELEVENLABS_VOICE_ID",
        scopes=PER_SERVER,
        min_length=1,
        max_length=100,
        description="the voice: its id, or its name when you set it"
        " (`!elevenlabs voices` lists them)",
    )
    model: ModelId = hark.setting(
        DEFAULT_MODEL,
        env="ELEVENLABS_MODEL",
        scopes=PER_SERVER,
        max_length=100,
        description="the model id, e.g. eleven_flash_v2_5 (fastest) or eleven_multilingual_v2",
    )
    stability: float = hark.setting(
        0.30,
        scopes=PER_SERVER,
        ge=0,
        le=1,
        description="how steady the voice is: low is more expressive, high more monotone",
    )
    similarity_boost: float = hark.setting(
        0.80,
        scopes=PER_SERVER,
        ge=0,
        le=1,
        description="how closely it keeps to the original voice",
    )
    style: float = hark.setting(
        0.55,
        scopes=PER_SERVER,
        ge=0,
        le=1,
        description="how much of the voice's style is exaggerated",
    )
    use_speaker_boost: bool = hark.setting(
        True, scopes=PER_SERVER, description="boost the likeness to the original speaker"
    )
    speed: float | None = hark.setting(
        None,
        scopes=PER_SERVER,
        ge=0.7,
        le=1.2,
        description="speaking speed, 0.7 to 1.2 (none: the voice's own)",
    )
    base_url: BaseUrl = hark.setting(
        DEFAULT_BASE_URL,
        env="ELEVENLABS_BASE_URL",
        scopes=BOT_WIDE,
        description="where the API is (a proxy or a test server instead of ElevenLabs)",
    )
    timeout: float = hark.setting(
        DEFAULT_TIMEOUT,
        env="ELEVENLABS_TIMEOUT",
        scopes=BOT_WIDE,
        gt=0,
        allow_inf_nan=False,
        description="seconds to wait for the first audio and between pieces of audio",
    )
