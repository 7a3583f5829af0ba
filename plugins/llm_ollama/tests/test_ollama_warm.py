"""warm(): one cheap request opens the connection pool; a failure never escapes."""

from __future__ import annotations

import logging

from hark.testing.loopback import unused_port


async def test_warm_opens_the_connection(make_generator, fake_ollama):
    generator = make_generator()
    await generator.warm()
    assert fake_ollama.count("/api/ps") == 1
    assert fake_ollama.count("/api/chat") == 0  # no model run, nothing generated
    await generator.aclose()


async def test_warm_with_the_server_down_does_not_raise(make_generator, caplog):
    generator = make_generator(host=f"http://127.0.0.1:{unused_port()}")
    with caplog.at_level(logging.DEBUG, logger="hark.provider"):
        await generator.warm()
    assert "warm-up" in caplog.text
    await generator.aclose()


async def test_warm_with_an_error_status_does_not_raise(make_generator, fake_ollama):
    fake_ollama.fail(500, paths=("/api/ps",))
    generator = make_generator()
    await generator.warm()
    assert fake_ollama.count("/api/ps") == 1
    await generator.aclose()


async def test_prime_loads_the_model_and_evaluates_how_turns_begin(make_generator, fake_ollama):
    from hark import PromptMessage, ToolSpec

    generator = make_generator()
    persona = [PromptMessage("system", "You are Brassy, a robot butler.")]
    spec = ToolSpec("lights", "Turn the lights on.", {"type": "object", "properties": {}})
    await generator.prime(persona, tools=[spec], guild_id=None)
    (body,) = fake_ollama.chat_requests
    assert body["messages"] == [{"role": "system", "content": "You are Brassy, a robot butler."}]
    assert body["options"]["num_predict"] == 1  # one token: the model runs, says nothing
    assert [t["function"]["name"] for t in body["tools"]] == ["lights"]
    await generator.aclose()
