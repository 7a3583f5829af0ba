"""Ollama: replies from a local or remote Ollama server, streamed as they are written."""

from __future__ import annotations

import hark
from hark_llm_ollama.cog import OllamaCog
from hark_llm_ollama.generator import OllamaGenerator, OllamaModel, public_url, same_model
from hark_llm_ollama.settings import DEFAULT_HOST, DEFAULT_MODEL, OLLAMA_KEY, OllamaSettings

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_MODEL",
    "OllamaCog",
    "OllamaGenerator",
    "OllamaModel",
    "OllamaSettings",
    "plugin",
    "public_url",
    "same_model",
]

plugin = hark.Plugin(
    description="Ollama: replies from a local or remote Ollama server, streamed as they"
    " are written",
    settings=OllamaSettings,
    secrets=[OLLAMA_KEY],
    providers=[OllamaGenerator],
    cogs=[OllamaCog],
)
