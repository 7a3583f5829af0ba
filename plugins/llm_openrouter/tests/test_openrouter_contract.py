"""The core's Generator contract, run against OpenRouterGenerator and the loopback server."""

from __future__ import annotations

import pytest
from fake_openai_chat import FakeToolCall, call_then_answer, tool_results
from hark_llm_openrouter import OpenRouterGenerator
from openrouter_support import FAST_RETRY, KEY, PLUGIN_ID

from hark.testing.contracts import GeneratorContract
from hark.testing.loopback import unused_port


class TestOpenRouterGeneratorContract(GeneratorContract):
    deadline = 10.0

    @pytest.fixture
    def generator(self, server, make_generator) -> OpenRouterGenerator:
        server.chunk_delay = 0.005  # a stream long enough to close or cancel mid-way
        return make_generator()

    @pytest.fixture
    def tool_generator(self, server, make_generator) -> OpenRouterGenerator:
        # A model that calls the contract's tool, then answers from its result; the
        # call streams in pieces, as OpenAI sends it.
        server.reply = call_then_answer(self.tool_spec.name, "It is {results}.", city="Paris")
        return make_generator()

    @pytest.fixture
    async def broken_generator(self):
        # Nothing listens on that port: every call fails to connect.
        generator = OpenRouterGenerator(
            base_url=f"http://127.0.0.1:{unused_port()}/v1", api_key=KEY, environ={}
        )
        generator.plugin_id = PLUGIN_ID
        generator.retry = FAST_RETRY
        yield generator
        await generator.aclose()


class TestOpenRouterUnstreamedContract(GeneratorContract):
    """The contract with the `stream` setting off: each reply is one response."""

    deadline = 10.0

    @pytest.fixture
    def generator(self, make_generator) -> OpenRouterGenerator:
        return make_generator(stream=False)

    @pytest.fixture
    def tool_generator(self, server, generator) -> OpenRouterGenerator:
        server.reply = call_then_answer(self.tool_spec.name, "It is {results}.", city="Paris")
        return generator

    @pytest.fixture
    def broken_generator(self, server, make_generator) -> OpenRouterGenerator:
        server.fail_next(500, times=100, endpoint="any")
        return make_generator(stream=False)


class TestOpenRouterContractAgainstFailingServer(GeneratorContract):
    """The error-path contract again, with a server that answers but always fails."""

    deadline = 10.0

    @pytest.fixture
    def generator(self, make_generator) -> OpenRouterGenerator:
        return make_generator()

    @pytest.fixture
    def tool_generator(self, server, generator) -> OpenRouterGenerator:
        # Tool calls sent whole, in one delta each (Mistral, Ollama's /v1).
        def reply(request):
            if tool_results(request):
                return "Sunny, 21 degrees."
            return [FakeToolCall(self.tool_spec.name, {"city": "Paris"}, whole=True)]

        server.reply = reply
        return generator

    @pytest.fixture
    def broken_generator(self, server, make_generator) -> OpenRouterGenerator:
        server.fail_next(500, times=100, endpoint="any")
        return make_generator()
