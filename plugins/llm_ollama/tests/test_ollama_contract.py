"""The core's Generator contract, run against OllamaGenerator and the fake Ollama server."""

from __future__ import annotations

from typing import Any

import pytest
from fake_ollama import DEFAULT_REPLY, FakeOllama, tool_call, tool_results, unused_url
from hark_llm_ollama import OllamaGenerator

from hark.providers import RetryPolicy
from hark.testing.contracts import GeneratorContract


def weather_model(body: dict[str, Any]) -> Any:
    """A model that calls get_weather when offered it, and answers from its result."""
    results = tool_results(body)
    if results:
        return f"Here is the weather: {results[0]}"
    if body.get("tools"):
        return ["Let me look that up.", tool_call("get_weather", city="Paris")]
    return DEFAULT_REPLY


class ScriptedTools:
    """The tool round trip on the fake server, scripted to call the offered tool."""

    @pytest.fixture
    def tool_generator(
        self, generator: OllamaGenerator, fake_ollama: FakeOllama
    ) -> OllamaGenerator:
        fake_ollama.reply = weather_model
        return generator


class TestOllamaGeneratorContract(ScriptedTools, GeneratorContract):
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


class TestOllamaGeneratorContractFailingServer(ScriptedTools, GeneratorContract):
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
