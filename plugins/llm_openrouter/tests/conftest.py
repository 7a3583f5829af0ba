"""Fixtures for the OpenRouter plugin's tests: a loopback OpenAI-compatible server and
generators pointed at it. Nothing here reaches the internet."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from fake_openai_chat import FakeOpenAIServer
from hark_llm_openrouter import OpenRouterGenerator
from openrouter_support import FAST_RETRY, KEY, PLUGIN_ID


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer(api_key=KEY) as fake:
        yield fake


@pytest.fixture
def make_generator(server: FakeOpenAIServer, hark_closing) -> Callable[..., OpenRouterGenerator]:
    """``make_generator(**kwargs)``: a generator for ``server`` (key, fast retries, plugin id),
    closed after the test.

    Keyword arguments go to :class:`OpenRouterGenerator`; ``environ`` defaults to
    empty so the developer's own ``OPENROUTER_*`` variables never leak in.
    """

    def make(**kwargs: Any) -> OpenRouterGenerator:
        kwargs.setdefault("base_url", server.base_url)
        kwargs.setdefault("api_key", KEY)
        kwargs.setdefault("environ", {})
        generator = hark_closing(OpenRouterGenerator(**kwargs))
        generator.plugin_id = PLUGIN_ID
        generator.retry = FAST_RETRY
        return generator

    return make
