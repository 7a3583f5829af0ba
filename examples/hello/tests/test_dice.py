"""The example's tool: what the model is shown, what it gets back, and a model that
calls it in a running bot (with a scripted fake model from the test kit)."""

from __future__ import annotations

import asyncio
import re

import hark_example_hello as hello

import hark
from hark.testing.fakes import FakeGenerator, fake_plugin, tool_call, tool_results
from hark.testing.harness import BotHarness

ROLLED = re.compile(r"^2d6: ([1-6]) \+ ([1-6]) = (\d+)$")


def test_the_model_is_shown_the_arguments_schema():
    spec = hello.roll_dice.spec()
    assert spec.name == "roll_dice"
    assert spec.description.startswith("Roll dice and say what came up")
    sides = spec.parameters["properties"]["sides"]
    assert (sides["minimum"], sides["maximum"], sides["default"]) == (2, 1000, 6)


async def test_a_roll_adds_up():
    ctx = hark.ToolContext(request=hark.ContextRequest(text="roll two dice"))
    for _ in range(20):
        text = await hello.roll_dice.func(hello.Dice(count=2, sides=6), ctx)
        first, second, total = ROLLED.match(text).groups()
        assert int(first) + int(second) == int(total)


async def test_a_model_rolls_the_dice_and_answers_with_the_result(tmp_path):
    def script(messages):
        results = tool_results(messages)
        if results:
            return f"You rolled {results[0]}."
        if "again" in messages[-1].content:
            return "No dice here."
        return [tool_call("roll_dice", count=2, sides=6)]

    llm = FakeGenerator(script, supports_tools=True)
    plugins = {"hello": hello.plugin, "fake_llm": fake_plugin(llm)}
    async with BotHarness(tmp_path, plugins=plugins) as h:
        reply = await h.ask("!ask roll two dice")
        async with asyncio.timeout(10):  # the streamed reply settles
            while reply.content.endswith("…"):
                await asyncio.sleep(0.02)
        assert "roll_dice" in llm.offered_tools[0]
        rolled = reply.content.removeprefix("You rolled ").removesuffix(".")
        assert ROLLED.match(rolled), reply.content

        # Switched off in a server, the plugin's tool is not offered there.
        await h.ask("!plugins disable hello", author=h.admin)
        assert (await h.ask("!ask roll again")).content == "No dice here."
        assert "roll_dice" not in llm.offered_tools[-1]
