"""Tests for the example plugin, written the way docs/plugins.md recommends."""

from __future__ import annotations

import asyncio

import hark_example_hello as hello
import pytest

from hark.providers import ContextRequest
from hark.testing.contracts import ContextProviderContract
from hark.testing.harness import BotHarness


class TestClockContract(ContextProviderContract):
    @pytest.fixture
    def context_provider(self):
        return hello.ClockContext()


async def test_clock_tells_the_time():
    part = await hello.ClockContext().provide(ContextRequest(text="what day is it?"))
    assert part is not None and part.messages[0].role == "system"
    assert "UTC" in part.messages[0].content


async def test_hello_prefix_slash_and_listener(tmp_path):
    async with BotHarness(tmp_path, plugins={"hello": hello}) as h:
        assert (await h.ask("!hello")).content == "Hello, alice!"

        inter = await h.server.invoke_slash(h.guild, h.channel, h.member, "hello")
        assert (await inter.wait_response()).content == "Hello, alice!"

        await h.ask("!greeting Howdy", author=h.admin)
        assert (await h.ask("!hello")).content == "Howdy, alice!"

        # the listener waves at "hello hark"
        message = await h.say("hello hark!")
        async with asyncio.timeout(5):
            while not message.reactions:
                await asyncio.sleep(0.02)
        assert list(message.reactions) == ["\N{WAVING HAND SIGN}"]
