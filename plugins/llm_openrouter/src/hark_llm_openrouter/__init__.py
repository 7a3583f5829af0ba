"""OpenRouter or any OpenAI-compatible chat API (OpenAI, Mistral, llama.cpp) as Hark's LLM."""

from __future__ import annotations

from hark import hookimpl
from hark_llm_openrouter.cog import OpenRouterCog
from hark_llm_openrouter.generator import (
    DEFAULT_MODEL,
    OPENROUTER_BASE_URL,
    OpenRouterGenerator,
)

__all__ = [
    "DEFAULT_MODEL",
    "OPENROUTER_BASE_URL",
    "OpenRouterCog",
    "OpenRouterGenerator",
    "register_cogs",
    "register_generators",
]


@hookimpl
def register_generators(register):
    # Configured from the environment (OPENROUTER_*), read when the bot loads plugins.
    register(OpenRouterGenerator())


@hookimpl
def register_cogs(register):
    register(OpenRouterCog)
