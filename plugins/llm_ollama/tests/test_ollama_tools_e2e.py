"""Images and tools end to end: a member talks to the real bot on the loopback Discord
server; the replies come from the fake Ollama server through the real ``ollama``
client; the tools are a declared plugin's (``@hark.tool``), run by the core's loop."""

from __future__ import annotations

import asyncio
import base64

import hark_llm_ollama
import pytest
from fake_ollama import tool_call, tool_results
from pydantic import BaseModel, Field

import hark
from hark import Capability
from hark.providers import RetryPolicy
from hark.testing.contracts import solid_png
from hark.testing.harness import BotHarness

CHAT = {"trigger_names": ["robot"], "edit_interval": 0.05, "rate_limit": "0"}
PNG = solid_png(3, 3)


class Roll(BaseModel):
    sides: int = Field(6, ge=2, le=100, description="faces of the die")


class Dice:
    """A plugin with one tool, and what the tool was asked."""

    def __init__(self) -> None:
        self.rolled: list[int] = []

        @hark.tool(timeout=2)
        async def roll_die(args: Roll, ctx: hark.ToolContext) -> str:
            """Roll one die and say what came up."""
            self.rolled.append(args.sides)
            return str(min(4, args.sides))

        self.plugin = hark.Plugin(description="Dice for the tests", tools=[roll_die])


@pytest.fixture
async def dice() -> Dice:
    return Dice()


@pytest.fixture
async def chat(tmp_path, fake_ollama, dice, monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", fake_ollama.url)
    plugins = {"llm_ollama": hark_llm_ollama, "dice": dice.plugin}
    async with BotHarness(tmp_path, plugins=plugins, config=CHAT) as h:
        (generator,) = h.bot.runtime.manager.providers(Capability.GENERATE)
        generator.retry = RetryPolicy(attempts=2, base_delay=0.01)
        yield h


def dice_model(body):
    """A model that rolls when it may, and then says what came up."""
    results = tool_results(body)
    if results:
        return f"You rolled a {results[0]}."
    if body.get("tools"):
        return ["Let me roll.", tool_call("roll_die", sides=6)]
    return "I can't roll here."


# -- images ------------------------------------------------------------------------


async def test_an_attached_image_reaches_ollama_in_its_images_field(chat, fake_ollama):
    fake_ollama.reply = "A red square."
    reply = await chat.ask("robot, what is this?", files=[("red.png", PNG)])
    assert await chat.final(reply) == "A red square."
    last = fake_ollama.last_chat["messages"][-1]
    assert last["role"] == "user" and last["content"].endswith("robot, what is this?")
    assert last["images"] == [base64.b64encode(PNG).decode()]
    # History keeps the words; the next turn does not send the image again.
    await chat.history(2)
    await chat.final(await chat.ask("robot, thanks"))
    assert fake_ollama.last_images == []


async def test_with_vision_off_the_model_reads_a_note(chat, fake_ollama):
    reply = await chat.ask("!config llm_ollama vision off", author=chat.admin)
    assert reply.content == "`llm_ollama.vision` is now `off` in this server."
    await chat.final(await chat.ask("robot, what is this?", files=[("red.png", PNG)]))
    last = fake_ollama.last_chat["messages"][-1]
    assert "images" not in last
    assert last["content"].endswith("robot, what is this?\n[image not shown: red.png]")


async def test_a_model_that_cannot_see_reads_a_note_and_status_says_so(chat, fake_ollama):
    fake_ollama.add_model("gemma2", capabilities=("completion", "tools"))
    fake_ollama.reply = "I can't see it."
    await chat.ask("!config llm_ollama model gemma2", author=chat.admin)
    fake_ollama.reset()
    reply = await chat.ask("robot, what is this?", files=[("red.png", PNG)])
    assert await chat.final(reply) == "I can't see it."
    refused, again = fake_ollama.chat_requests
    assert refused["messages"][-1]["images"] == [base64.b64encode(PNG).decode()]
    assert "images" not in again["messages"][-1]
    assert again["messages"][-1]["content"].endswith("[image not shown: red.png]")

    fake_ollama.reset()
    await chat.final(await chat.ask("robot, and this?", files=[("blue.png", PNG)]))
    assert fake_ollama.count() == 1
    assert "[image not shown: blue.png]" in fake_ollama.last_chat["messages"][-1]["content"]
    status = (await chat.ask("!ollama")).content
    assert (
        "Images sent: on, but `gemma2:latest` cannot read them: notes sent instead"
        " · tools offered: on" in status
    )
    await chat.ask("!config llm_ollama vision off", author=chat.admin)
    status = (await chat.ask("!ollama")).content
    assert "Images sent: off · tools offered: on" in status


async def test_a_model_that_fails_on_an_image_mid_reply_says_what_to_switch_off(chat, fake_ollama):
    """Part of the reply was posted: asking again would post it twice, so the admin is
    told what to switch off, as before."""
    fake_ollama.reply = "It looks like a red square."
    fake_ollama.delay = 0.1  # slower than the bot's edit interval: it posts as words come
    release = fake_ollama.hold(after=2)
    fake_ollama.break_stream(
        "error_line", after=3, error="this model is missing data required for image input"
    )
    first = await chat.ask("robot, what is this?", files=[("red.png", PNG)])
    assert first.content.startswith("It ")
    waiter = asyncio.create_task(chat.next_reply())
    release.set()
    notice = await waiter
    assert first.content == "It looks like [cut off]"
    assert notice.content == (
        "Sorry, model `llama3.2` cannot read images; choose another with `!model`, or"
        " switch images off here with `!config llm_ollama vision off`"
    )
    assert fake_ollama.count() == 1  # the partial reply was not replayed


# -- tools -------------------------------------------------------------------------


@pytest.mark.parametrize("streamed", [True, False], ids=["streamed", "not-streamed"])
async def test_a_tool_call_its_result_then_the_answer(chat, fake_ollama, dice, streamed):
    fake_ollama.reply = dice_model
    fake_ollama.ignore_stream = not streamed
    reply = await chat.ask("robot, roll a die")
    assert await chat.final(reply) == "Let me roll.\n\nYou rolled a 4."
    assert dice.rolled == [6]

    first, second = fake_ollama.chat_requests
    (offered,) = first["tools"]
    assert offered["function"]["name"] == "roll_die"
    assert offered["function"]["parameters"]["properties"]["sides"] == {
        "type": "integer",
        "description": "faces of the die (2 to 100; default 6)",
    }
    # The second round carries the call and its result, in Ollama's format.
    assert second["messages"][-2:] == [
        {
            "role": "assistant",
            "content": "Let me roll.",
            "tool_calls": [{"function": {"name": "roll_die", "arguments": {"sides": 6}}}],
        },
        {"role": "tool", "content": "4", "tool_name": "roll_die"},
    ]
    assert second["tools"] == first["tools"]
    # History has the question and the final answer, once; no tool messages.
    entries = await chat.history(2)
    assert [(e.role, e.content) for e in entries] == [
        ("user", "robot, roll a die"),
        ("assistant", "Let me roll.\n\nYou rolled a 4."),
    ]


async def test_a_call_of_no_known_tool_is_answered_with_an_error_the_model_reads(
    chat, fake_ollama, dice
):
    def confused(body):
        results = tool_results(body)
        if results:
            return f"Oops: {results[0]}"
        return [{"function": {"name": "", "arguments": {}}}]

    fake_ollama.reply = confused
    text = await chat.final(await chat.ask("robot, roll"))
    assert text == "Oops: error: there is no tool called '' (tools: roll_die)"
    assert dice.rolled == []


async def test_a_model_that_keeps_calling_tools_stops_at_the_round_limit(chat, fake_ollama, dice):
    def roller(body):
        if not body.get("tools"):  # the last round offers none
            return "I rolled a lot."
        return [tool_call("roll_die", sides=20)]

    fake_ollama.reply = roller
    await chat.ask("!config chat tool_rounds 2", author=chat.admin)
    text = await chat.final(await chat.ask("robot, roll for ever"))
    assert text == "I rolled a lot.\n-# (stopped after 2 rounds of tool calls)"
    assert dice.rolled == [20, 20]
    assert [bool(body["tools"]) for body in fake_ollama.chat_requests] == [True, True, False]
    # The last round has the calls and results as plain text (no tool messages).
    last = fake_ollama.last_chat["messages"]
    assert {m["role"] for m in last} <= {"system", "user", "assistant"}
    assert not any("tool_calls" in m for m in last)


async def test_a_model_without_tools_answers_in_text(chat, fake_ollama, dice):
    """A tool plugin installed does not break chat with a model that takes no tools:
    the first turn is asked again without them, later turns offer none."""
    fake_ollama.add_model("gemma2", capabilities=("completion", "vision"))
    fake_ollama.reply = dice_model
    await chat.ask("!config llm_ollama model gemma2", author=chat.admin)
    fake_ollama.reset()
    assert await chat.final(await chat.ask("robot, roll a die")) == "I can't roll here."
    refused, again = fake_ollama.chat_requests
    assert refused["tools"][0]["function"]["name"] == "roll_die"
    assert again["tools"] == []

    fake_ollama.reset()
    assert await chat.final(await chat.ask("robot, roll again")) == "I can't roll here."
    assert fake_ollama.count() == 1
    assert fake_ollama.last_chat["tools"] == []
    assert dice.rolled == []
    status = (await chat.ask("!ollama")).content
    assert (
        "Images sent: on · tools offered: on, but `gemma2:latest` does not support them:"
        " not offered" in status
    )

    reply = await chat.ask("!config llm_ollama tools off", author=chat.admin)
    assert reply.content == "`llm_ollama.tools` is now `off` in this server."
    assert await chat.final(await chat.ask("robot, roll a die")) == "I can't roll here."
    assert fake_ollama.last_chat["tools"] == []
    status = (await chat.ask("!ollama")).content
    assert "Images sent: on · tools offered: off" in status
