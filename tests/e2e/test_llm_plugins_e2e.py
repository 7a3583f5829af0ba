"""The text path end to end with the real LLM plugins.

Real discord.py client <-> loopback Discord (hark.testing) <-> HarkBot <-> the
plugin's real client library (``ollama`` / ``openai``) <-> the plugin's loopback
fake of its service. Each scenario runs once per plugin.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import hark_llm_ollama
import hark_llm_openrouter
import pytest
from fake_ollama import FakeOllama
from fake_openai_chat import FakeOpenAIServer

from hark.testing.harness import BotHarness

CHAT = {"trigger_names": ["robot"], "edit_interval": 0.05, "rate_limit": "0"}


@dataclass
class LLM:
    plugin_id: str
    module: object
    script: dict
    fail: Callable[[int, int], None]
    last_messages: Callable[[], list[dict]]


@pytest.fixture(params=["llm_ollama", "llm_openrouter"])
async def llm(request, monkeypatch) -> AsyncIterator[LLM]:
    script = {"reply": "Hello from the model."}

    def reply(*_args):
        return script["reply"]

    if request.param == "llm_ollama":
        server = FakeOllama(reply=reply, chunk_size=64)
        await server.start()
        monkeypatch.setenv("OLLAMA_HOST", server.url)
        monkeypatch.setenv("OLLAMA_MODEL", "llama3.2")
        yield LLM(
            "llm_ollama",
            hark_llm_ollama,
            script,
            lambda status, times: server.fail(status, times),
            lambda: server.last_chat["messages"],
        )
    else:
        server = FakeOpenAIServer(reply=reply, api_key="sk-test-e2e-0123456789", chunk_size=64)
        await server.start()
        monkeypatch.setenv("OPENROUTER_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENROUTER_API_KEY", "sk-test-e2e-0123456789")
        monkeypatch.setenv("OPENROUTER_MODEL", server.models[0])
        yield LLM(
            "llm_openrouter",
            hark_llm_openrouter,
            script,
            lambda status, times: server.fail_next(status, times=times),
            lambda: server.last_chat.messages,
        )
    await server.close()


@pytest.fixture
async def bot(llm: LLM, tmp_path) -> AsyncIterator[BotHarness]:
    harness = BotHarness(tmp_path, plugins={llm.plugin_id: llm.module}, config=CHAT)
    await harness.start()
    try:
        yield harness
    finally:
        await harness.close()


async def test_callsign_reply_and_history_across_restart(llm: LLM, bot: BotHarness):
    reply = await bot.ask("robot, my favourite colour is teal")
    assert await bot.final(reply) == "Hello from the model."
    await bot.history(2, exact=True)
    await bot.restart()
    llm.script["reply"] = "Teal, you said."
    answer = await bot.ask("robot, what is my favourite colour?")
    assert await bot.final(answer) == "Teal, you said."
    contents = [m["content"] for m in llm.last_messages()]
    assert any("my favourite colour is teal" in c for c in contents)
    assert "Hello from the model." in contents
    assert contents[-1].endswith("robot, what is my favourite colour?")
    # the speaker's name reaches the model
    assert contents[-1].startswith("alice: ")


async def test_non_trigger_gets_nothing(llm: LLM, bot: BotHarness):
    await bot.say("just chatting among humans")
    await bot.expect_silence(within=0.5)


async def test_long_reply_split_with_fences_and_no_pings(llm: LLM, bot: BotHarness):
    code = "\n".join(f"x_{i} = {i}  # {'-' * 40}" for i in range(60))
    llm.script["reply"] = (
        "@everyone look:\n\n```python\n" + code + "\n```\n\n" + "More words. " * 250
    )
    assert len(llm.script["reply"]) > 5000
    await bot.say("robot, go long")
    async with asyncio.timeout(15):
        while True:
            mine = [
                m for m in bot.server.messages(bot.channel) if m.author.id == bot.server.bot_user.id
            ]
            if mine and mine[-1].content.endswith("More words.") and len(mine) >= 3:
                break
            await asyncio.sleep(0.05)
    assert all(len(m.content) <= 2000 for m in mine)
    assert all(m.content.count("```") % 2 == 0 for m in mine)
    assert mine[0].content.startswith("@everyone")
    assert not any(m.mention_everyone or m.mentions or m.mention_roles for m in mine)


async def test_provider_failure_is_one_notice_and_no_history(llm: LLM, bot: BotHarness):
    llm.fail(503, 10)  # more than the core's retries
    notice = await bot.ask("robot, hello?")
    assert notice.content.startswith("Sorry,") and "503" in notice.content
    await bot.expect_silence(within=0.5)
    assert await bot.bot.runtime.history.count(bot.channel.id) == 0
