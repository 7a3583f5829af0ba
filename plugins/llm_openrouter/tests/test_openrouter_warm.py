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
