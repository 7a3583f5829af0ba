"""The core's Generator contract, run against OllamaGenerator and the fake Ollama server."""

from __future__ import annotations

import pytest
from fake_ollama import FakeOllama, unused_url
from hark_llm_ollama import OllamaGenerator

from hark.providers import RetryPolicy
from hark.testing.contracts import GeneratorContract


class TestOllamaGeneratorContract(GeneratorContract):
    deadline = 10.0

    @pytest.fixture
    async def generator(self, fake_ollama: FakeOllama) -> OllamaGenerator:
        fake_ollama.delay = 0.005  # a real model takes time per token; so does the fake
        generator = OllamaGenerator(
            host=fake_ollama.url, retry=RetryPolicy(attempts=2, base_delay=0.01)
        )
        generator.plugin_id = "llm_ollama"
        return generator

    @pytest.fixture
    def broken_generator(self) -> OllamaGenerator:
        generator = OllamaGenerator(
            host=unused_url(), timeout=2.0, retry=RetryPolicy(attempts=2, base_delay=0.01)
        )
        generator.plugin_id = "llm_ollama"
        return generator


class TestOllamaGeneratorContractFailingServer(GeneratorContract):
    """The same error-path contract when the server answers, but with HTTP 503s."""

    deadline = 10.0

    @pytest.fixture
    async def generator(self, fake_ollama: FakeOllama) -> OllamaGenerator:
        generator = OllamaGenerator(host=fake_ollama.url, retry=RetryPolicy(attempts=1))
        generator.plugin_id = "llm_ollama"
        return generator

    @pytest.fixture
    def broken_generator(self, fake_ollama: FakeOllama) -> OllamaGenerator:
        fake_ollama.fail(503, times=100, paths=("/api/chat", "/api/tags"))
        generator = OllamaGenerator(
            host=fake_ollama.url, retry=RetryPolicy(attempts=2, base_delay=0.01)
        )
        generator.plugin_id = "llm_ollama"
        return generator
