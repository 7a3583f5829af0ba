"""What the plugin can be told: its settings model and its (optional) secret.

The core resolves each value (default < bot.toml ``[plugin.llm_ollama]`` < the
environment variable < the owner's bot-wide value < the server's), generates
``!config llm_ollama`` / ``/config``, and hands every reply its server's values.
The model, its options and whether images and tools are sent are per server;
where the Ollama server is, and how long to wait for it, are bot-wide. The
stored keys are those the plugin's old ``!ollama model`` / ``!ollama set``
commands wrote, so a bot's database keeps every server's choices.
"""

from __future__ import annotations

import contextlib
import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, ConfigDict

import hark

DEFAULT_HOST = "http://localhost:11434"
#: Used when neither a setting nor ``OLLAMA_MODEL`` names a model: small, common, good at chat.
DEFAULT_MODEL = "llama3.2"
DEFAULT_TIMEOUT = 120.0

PER_SERVER = ("global", "server")
BOT_WIDE = ("global",)

# Read by the `ollama` client itself (a bearer token for ollama.com or an
# authenticating proxy); declared so `!config` shows whether it is set and the logs
# never show it.
OLLAMA_KEY = hark.Secret(
    "OLLAMA_API_KEY", "a bearer token for a hosted Ollama behind authentication", required=False
)

# Go durations as Ollama parses them: "5m", "1h30m", "90s", "-1m"...
_DURATION = re.compile(r"^-?(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")
_SECONDS = re.compile(r"-?\d+")
_ON, _OFF, _EFFORTS = ("on", "true", "yes"), ("off", "false", "no"), ("low", "medium", "high")


def _keep_alive(text: str) -> str:
    """Seconds (``-1`` forever, ``0`` unload at once) or a Go duration (``10m``)."""
    text = text.strip()
    if not (_SECONDS.fullmatch(text) or _DURATION.match(text)):
        raise ValueError("must be a duration such as 10m or 1h, or -1 (always) / 0")
    return text


def keep_alive_value(text: str) -> int | str:
    """How Ollama takes it: seconds as a number (a string must be a duration with a unit)."""
    return int(text) if _SECONDS.fullmatch(text) else text


def _seconds_as_text(value: Any) -> Any:
    # The old `!ollama set keep_alive -1` stored a number.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _think(value: bool | str) -> bool | str:
    """``on``/``off`` (sent as true/false) or an effort: ``low``, ``medium``, ``high``."""
    if isinstance(value, bool):
        return value
    text = value.strip().lower()
    if text in _ON or text in _OFF:
        return text in _ON
    if text not in _EFFORTS:
        raise ValueError("must be on, off, low, medium or high")
    return text


KeepAlive = Annotated[str, BeforeValidator(_seconds_as_text), AfterValidator(_keep_alive)]
Think = Annotated[bool | str, AfterValidator(_think)]


def _host(text: str) -> str:
    text = text.strip() or DEFAULT_HOST
    with contextlib.suppress(ValueError):  # a password (behind a proxy) is never logged
        hark.register_secret(urlsplit(text if "://" in text else f"http://{text}").password)
    return text


Host = Annotated[str, AfterValidator(_host)]


class OllamaSettings(hark.Settings):
    model_config = ConfigDict(str_strip_whitespace=True)

    model: str = hark.setting(
        DEFAULT_MODEL,
        env="OLLAMA_MODEL",
        scopes=PER_SERVER,
        min_length=1,
        description="the model this server talks to (`!ollama models` lists those pulled)",
    )
    temperature: float | None = hark.setting(
        None,
        scopes=PER_SERVER,
        ge=0,
        le=2,
        allow_inf_nan=False,
        description="sampling temperature, 0 to 2, lower is more predictable (none: the model's)",
    )
    num_ctx: int | None = hark.setting(
        None,
        scopes=PER_SERVER,
        ge=256,
        le=1_048_576,
        description="context window in tokens, e.g. 8192: more history, more memory"
        " (none: the Ollama server's)",
    )
    keep_alive: KeepAlive | None = hark.setting(
        None,
        scopes=PER_SERVER,
        description="how long the model stays loaded: 10m, 1h, -1 (always), 0 (unload at once)"
        " (none: the server's, 5 minutes)",
    )
    think: Think | None = hark.setting(
        None,
        scopes=PER_SERVER,
        choices=[True, False, *_EFFORTS],
        description="thinking models (qwen3, deepseek-r1, gpt-oss): on, off, low, medium, high"
        " (none: not sent); the thinking is never posted",
    )
    # Both on by default: most current Ollama models take images or tools. A server
    # whose model takes neither switches them off rather than getting errors.
    vision: bool = hark.setting(
        True,
        scopes=PER_SERVER,
        description="send images to the model (off: it reads a note naming each image);"
        " turn off for a model without vision",
    )
    tools: bool = hark.setting(
        True,
        scopes=PER_SERVER,
        description="offer the bot's tools to the model; turn off for a model that does"
        " not support tools",
    )
    host: Host = hark.setting(
        DEFAULT_HOST,
        env="OLLAMA_HOST",
        scopes=BOT_WIDE,
        description="the Ollama server: a URL, or host:port (without a port, 11434)",
    )
    timeout: float = hark.setting(
        DEFAULT_TIMEOUT,
        env="OLLAMA_TIMEOUT",
        scopes=BOT_WIDE,
        gt=0,
        allow_inf_nan=False,
        description="seconds to wait for each piece of a reply (the first includes loading"
        " the model)",
    )


def options_of(settings: OllamaSettings) -> dict[str, Any]:
    """The settings that become Ollama request ``options`` (unset ones left out)."""
    values = {"temperature": settings.temperature, "num_ctx": settings.num_ctx}
    return {key: value for key, value in values.items() if value is not None}
