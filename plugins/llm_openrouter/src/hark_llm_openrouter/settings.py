"""What the plugin can be told: its settings model and its secret.

The core resolves each value (default < bot.toml ``[plugin.llm_openrouter]`` < the
environment variable < the owner's bot-wide value < the server's), generates
``!config llm_openrouter`` / ``/config``, and hands every reply its server's values.
The model, the sampling settings and what the model is sent (images, tools, a
streamed reply) are per server; the endpoint, the attribution headers and the
timeout are bot-wide. The stored keys are those the plugin's old
``!openrouter model`` / ``!openrouter set`` commands wrote, so a bot's database
keeps every server's choices.
"""

from __future__ import annotations

import contextlib
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, ConfigDict

import hark

OPENROUTER_BASE_URL = "https://openrouter.ai/api/v1"
DEFAULT_MODEL = "openai/gpt-4o-mini"
PROJECT_URL = "https://github.com/hark-bot/hark"
DEFAULT_APP_NAME = "Hark"
DEFAULT_TIMEOUT = 60.0

PER_SERVER = ("global", "server")
BOT_WIDE = ("global",)

# Hosted APIs (OpenRouter, OpenAI, Mistral) refuse every request without it; a local
# server (llama.cpp, vLLM, LM Studio) may run without one, so it is not "required":
# unavailable_reason() says when this endpoint needs it.
API_KEY = hark.Secret(
    "OPENROUTER_API_KEY",
    "the API key (OpenRouter, OpenAI, Mistral); a local server may need none",
    required=False,
)


def _base_url(text: str) -> str:
    """`https://host/v1/` and `https://host/v1` are the same endpoint; a password in it
    is never logged."""
    text = text.rstrip("/") or OPENROUTER_BASE_URL
    with contextlib.suppress(ValueError):
        hark.register_secret(urlsplit(text).password)
    return text


BaseUrl = Annotated[str, AfterValidator(_base_url)]


class OpenRouterSettings(hark.Settings):
    model_config = ConfigDict(str_strip_whitespace=True)

    model: str = hark.setting(
        DEFAULT_MODEL,
        env="OPENROUTER_MODEL",
        scopes=PER_SERVER,
        min_length=1,
        description="the model this server talks to (`!openrouter models` lists them)",
    )
    temperature: float = hark.setting(
        0.7,
        scopes=PER_SERVER,
        ge=0,
        le=2,
        allow_inf_nan=False,
        description="sampling temperature, 0 to 2 (lower is more predictable)",
    )
    max_tokens: int = hark.setting(
        1024, scopes=PER_SERVER, ge=1, le=1_000_000, description="longest reply, in tokens"
    )
    top_p: float | None = hark.setting(
        None,
        scopes=PER_SERVER,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="nucleus sampling, 0 to 1 (none: not sent, the model's own)",
    )
    vision: bool = hark.setting(
        True,
        scopes=PER_SERVER,
        description="send images to the model (off: it reads a note naming each image;"
        " a model without vision gets the notes anyway once its endpoint refuses one)",
    )
    tools: bool = hark.setting(
        True,
        scopes=PER_SERVER,
        description="let the model call the bot's tools (a model without tool use is"
        " answered without them once its endpoint refuses them; off stops offering them)",
    )
    stream: bool = hark.setting(
        True,
        scopes=PER_SERVER,
        description="stream the reply as it is written (off: it comes in one piece; a"
        " server that cannot stream tool calls gets whole replies when tools are offered)",
    )
    base_url: BaseUrl = hark.setting(
        OPENROUTER_BASE_URL,
        env="OPENROUTER_BASE_URL",
        scopes=BOT_WIDE,
        description="the OpenAI-compatible API, e.g. https://api.openai.com/v1 or a local"
        " http://127.0.0.1:8080/v1",
    )
    site_url: str = hark.setting(
        PROJECT_URL,
        env="OPENROUTER_SITE_URL",
        scopes=BOT_WIDE,
        min_length=1,
        description="sent as HTTP-Referer (OpenRouter's app attribution)",
    )
    app_name: str = hark.setting(
        DEFAULT_APP_NAME,
        env="OPENROUTER_APP_NAME",
        scopes=BOT_WIDE,
        min_length=1,
        description="sent as X-Title (OpenRouter's app attribution)",
    )
    timeout: float = hark.setting(
        DEFAULT_TIMEOUT,
        env="OPENROUTER_TIMEOUT",
        scopes=BOT_WIDE,
        gt=0,
        allow_inf_nan=False,
        description="seconds to wait for the reply to start and between its pieces",
    )
