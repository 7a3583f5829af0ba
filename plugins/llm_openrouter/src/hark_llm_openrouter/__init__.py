"""OpenRouter or any OpenAI-compatible chat API (OpenAI, Mistral, llama.cpp) as Hark's LLM."""

from __future__ import annotations

import hark
from hark_llm_openrouter.cog import OpenRouterCog
from hark_llm_openrouter.generator import OpenRouterGenerator
from hark_llm_openrouter.settings import (
    API_KEY,
    DEFAULT_MODEL,
    OPENROUTER_BASE_URL,
    OpenRouterSettings,
)

__all__ = [
    "DEFAULT_MODEL",
    "OPENROUTER_BASE_URL",
    "OpenRouterCog",
    "OpenRouterGenerator",
    "OpenRouterSettings",
    "plugin",
]

plugin = hark.Plugin(
    description="OpenRouter or any OpenAI-compatible chat API (OpenAI, Mistral, llama.cpp)"
    " as Hark's LLM",
    settings=OpenRouterSettings,
    secrets=[API_KEY],
    providers=[OpenRouterGenerator],
    cogs=[OpenRouterCog],
)
