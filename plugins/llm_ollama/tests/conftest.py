"""Fixtures for the Ollama plugin's tests: a fake Ollama server and generators aimed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from fake_ollama import FakeOllama
from hark_llm_ollama import OllamaGenerator

from hark.providers import RetryPolicy

# Retries as the core does them, minus the waiting.
FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own Ollama settings must not leak into the tests."""
    for name in ("OLLAMA_HOST", "OLLAMA_MODEL", "OLLAMA_TIMEOUT", "OLLAMA_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def fake_ollama() -> AsyncIterator[FakeOllama]:
    async with FakeOllama(models=("llama3.2:latest", "qwen2.5:7b")) as server:
        yield server


@pytest.fixture
def make_generator(fake_ollama: FakeOllama) -> Callable[..., OllamaGenerator]:
    """``make_generator(**kwargs)``: an OllamaGenerator on the fake server, registered as
    the plugin would be (id ``llm_ollama``), with fast retries."""

    def make(**kwargs: Any) -> OllamaGenerator:
        kwargs.setdefault("host", fake_ollama.url)
        kwargs.setdefault("retry", FAST_RETRY)
        generator = OllamaGenerator(**kwargs)
        generator.plugin_id = "llm_ollama"
        return generator

    return make


@pytest.fixture
def settings(hark_settings_store):
    """A real settings namespace for the plugin, on a SQLite database in tmp_path."""
    return hark_settings_store.for_plugin("llm_ollama")
