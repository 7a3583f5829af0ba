"""warm(): one cheap request (GET /models) opens the connection pool; a failure never
escapes and never shows the key."""

from __future__ import annotations

import logging

from fake_openai_chat import MODELS_PATH
from openrouter_support import KEY

from hark.testing.loopback import unused_port


async def test_warm_opens_the_connection(make_generator, server):
    generator = make_generator()
    await generator.warm()
    (request,) = server.requests
    assert (request.method, request.path) == ("GET", MODELS_PATH)
    assert request.bearer == KEY
    assert server.chat_requests == []


async def test_warm_with_the_service_down_does_not_raise(make_generator, caplog):
    generator = make_generator(base_url=f"http://127.0.0.1:{unused_port()}/v1")
    with caplog.at_level(logging.DEBUG, logger="hark.provider"):
        await generator.warm()
    assert "warm-up" in caplog.text and KEY not in caplog.text


async def test_warm_with_an_error_status_does_not_raise(make_generator, server):
    server.fail_next(503)
    await make_generator().warm()
    assert len(server.requests) == 1


async def test_warm_without_a_key_does_nothing(make_generator, server):
    generator = make_generator(base_url="https://openrouter.ai/api/v1", api_key="")
    await generator.warm()
    assert server.requests == []


async def test_prime_evaluates_how_turns_begin_on_a_local_server_only(make_generator, server):
    from hark_llm_openrouter.generator import is_local_url

    from hark import PromptMessage

    persona = [PromptMessage("system", "You are Brassy, a robot butler.")]
    await make_generator().prime(persona)  # the loopback server: a llama.cpp of this machine
    (request,) = server.chat_requests
    assert request.body["max_tokens"] == 1
    assert request.messages == [{"role": "system", "content": "You are Brassy, a robot butler."}]
    # A hosted API is not primed (it would bill for it): no request at all.
    await make_generator(base_url="https://openrouter.ai/api/v1").prime(persona)
    assert len(server.chat_requests) == 1
    assert all(map(is_local_url, ["http://localhost:8080/v1", "http://10.0.0.5:8000/v1"]))
    assert not any(map(is_local_url, ["https://api.openai.com/v1", "http://8.8.8.8/v1"]))
