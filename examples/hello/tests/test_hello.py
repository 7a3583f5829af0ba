"""Tests for the example plugin, written the way docs/plugins.md recommends: the core's
contract suite for the provider, and the real bot on a loopback Discord for the rest."""

from __future__ import annotations

import asyncio

import hark_example_hello as hello
import pytest

import hark
from hark.testing.contracts import ContextProviderContract
from hark.testing.fakes import FakeGenerator, fake_plugin
from hark.testing.harness import BotHarness


class TestClockContract(ContextProviderContract):
    @pytest.fixture
    def context_provider(self):
        return hello.ClockContext()


async def test_clock_tells_the_time():
    part = await hello.ClockContext().provide(hark.ContextRequest(text="what day is it?"))
    assert part is not None and part.messages[0].role == "system"
    assert "UTC" in part.messages[0].content


async def test_hello_prefix_slash_and_listener(tmp_path):
    async with BotHarness(tmp_path, plugins={"hello": hello.plugin}) as h:
        assert (await h.ask("!hello")).content == "Hello, alice!"

        inter = await h.server.invoke_slash(h.guild, h.channel, h.member, "hello")
        assert (await inter.wait_response()).content == "Hello, alice!"

        # The greeting is a setting: the core's `!config` shows and changes it.
        shown = await h.ask("!config hello")
        assert "`greeting` = `Hello` (default)" in shown.content
        refused = await h.ask("!config hello greeting Howdy")  # alice may not
        assert "Manage Server" in refused.content
        await h.ask("!config hello greeting Howdy", author=h.admin)
        assert (await h.ask("!hello")).content == "Howdy, alice!"
        await h.ask("!config hello greeting reset", author=h.admin)
        assert (await h.ask("!hello")).content == "Hello, alice!"

        # the listener waves at "hello hark"
        message = await h.say("hello hark!")
        async with asyncio.timeout(5):
            while not message.reactions:
                await asyncio.sleep(0.02)
        assert list(message.reactions) == ["\N{WAVING HAND SIGN}"]


async def test_the_clock_reaches_the_prompt_until_it_is_turned_off(tmp_path):
    llm = FakeGenerator("It is Tuesday.")
    plugins = {"hello": hello.plugin, "fake_llm": fake_plugin(llm)}
    async with BotHarness(tmp_path, plugins=plugins) as h:
        await h.ask("!ask what day is it?")
        prompt = "\n".join(m.content for m in llm.requests[-1].messages)
        assert "The current date and time is" in prompt

        await h.ask("!config hello clock off", author=h.admin)
        await h.ask("!ask and now?")
        prompt = "\n".join(m.content for m in llm.requests[-1].messages)
        assert "The current date and time is" not in prompt


async def test_each_server_has_its_own_greeting(tmp_path):
    """Two servers on one loopback Discord: a value set in one never shows in the other."""
    async with BotHarness(tmp_path, plugins={"hello": hello.plugin}) as h:
        other = h.server.create_guild("Other Server")
        lobby = h.server.create_text_channel(other, "lobby")
        carol = h.server.create_member(other, "carol")

        await h.ask("!config hello greeting Ahoy", author=h.admin)
        assert (await h.ask("!hello")).content == "Ahoy, alice!"
        assert (await h.ask("!hello", channel=lobby, author=carol)).content == "Hello, carol!"
