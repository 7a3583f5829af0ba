"""A conversation end to end: a member talks to the real bot on the loopback Discord
server, the reply comes from the fake Ollama server through the real ``ollama`` client."""

from __future__ import annotations

import asyncio

import hark_llm_ollama
import pytest

from hark import Capability
from hark.providers import RetryPolicy
from hark.testing.harness import BotHarness

CHAT = {"trigger_names": ["robot"], "edit_interval": 0.05, "rate_limit": "0"}


@pytest.fixture
async def chat(tmp_path, fake_ollama, monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", fake_ollama.url)
    async with BotHarness(tmp_path, plugins={"llm_ollama": hark_llm_ollama}, config=CHAT) as h:
        (h.generator,) = h.bot.runtime.manager.providers(Capability.GENERATE)
        h.generator.retry = RetryPolicy(attempts=2, base_delay=0.01)
        yield h


async def test_a_member_gets_the_models_reply(chat, fake_ollama):
    fake_ollama.reply = "Paris is the capital of France."
    reply = await chat.ask("robot, what's the capital of France?")
    assert await chat.final(reply) == "Paris is the capital of France."

    body = fake_ollama.last_chat
    assert body["model"] == "llama3.2"
    assert body["stream"] is True
    assert body["messages"][0]["role"] == "system"
    assert body["messages"][-1] == {
        "role": "user",
        "content": "alice: robot, what's the capital of France?",
    }
    assert fake_ollama.count() == 1


async def test_the_servers_model_and_options_are_used(chat, fake_ollama):
    await chat.ask("!config llm_ollama model qwen2.5:7b", author=chat.admin)
    await chat.ask("!config llm_ollama num_ctx 8192", author=chat.admin)
    await chat.final(await chat.ask("robot, hello"))
    assert fake_ollama.last_chat["model"] == "qwen2.5:7b"
    assert fake_ollama.last_chat["options"]["num_ctx"] == 8192

    # the core's own !model command lists and sets through the same generator
    shown = await chat.ask("!model")
    assert shown.content == "`llm_ollama` uses model `qwen2.5:7b` here."
    await chat.ask("!model llama3.2:latest", author=chat.admin)
    await chat.final(await chat.ask("robot, hello again"))
    assert fake_ollama.last_chat["model"] == "llama3.2:latest"
    # ...as `!config` shows; `llama3.2` means `llama3.2:latest` there too
    shown = await chat.ask("!config llm_ollama model")
    assert shown.content.startswith("`llm_ollama.model` = `llama3.2:latest` (this server)")
    reply = await chat.ask("!model llama3.2", author=chat.admin)
    assert reply.content == "`llm_ollama` now uses model `llama3.2:latest` here."


async def test_a_missing_model_tells_how_to_fix_it(chat, fake_ollama):
    await chat.generator.set_model(chat.guild.id, "mistral")
    notice = await chat.ask("robot, hello")
    assert notice.content == (
        "Sorry, model `mistral` is not on the Ollama server; pull it with "
        "`ollama pull mistral` or choose another with `!model`"
    )
    assert fake_ollama.count() == 1  # not retried


async def test_a_stream_that_breaks_is_cut_off_once(chat, fake_ollama):
    fake_ollama.reply = "One two three four five six."
    fake_ollama.delay = 0.1  # slower than the bot's edit interval: it posts as words come
    release = fake_ollama.hold(after=3)  # three words, then wait until the bot posted them
    fake_ollama.break_stream("disconnect", after=4)
    first = await chat.ask("robot, count for me")
    assert first.content.startswith("One ")  # posted while the stream is held
    waiter = asyncio.create_task(chat.next_reply())
    release.set()
    notice = await waiter
    assert first.content == "One two three four [cut off]"
    assert notice.content == "Sorry, `llm_ollama` sent back something I couldn't use."
    assert fake_ollama.count() == 1  # the partial reply was not replayed
