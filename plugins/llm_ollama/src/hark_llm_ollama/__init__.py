"""Ollama: replies from a local or remote Ollama server, streamed as they are written."""

from __future__ import annotations

from hark import hookimpl
from hark_llm_ollama.cog import OllamaCog
from hark_llm_ollama.generator import (
    DEFAULT_HOST,
    DEFAULT_MODEL,
    OllamaGenerator,
    OllamaModel,
    public_url,
    same_model,
)

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_MODEL",
    "OllamaCog",
    "OllamaGenerator",
    "OllamaModel",
    "public_url",
    "register_cogs",
    "register_generators",
    "same_model",
]


@hookimpl
def register_generators(register):
    # One generator per plugin manager; it reads OLLAMA_HOST / OLLAMA_MODEL when used,
    # so a .env loaded after import still counts.
    register(OllamaGenerator())


@hookimpl
def register_cogs(register):
    register(OllamaCog)
