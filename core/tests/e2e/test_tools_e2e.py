"""Tools end to end: real discord.py, real HarkBot, loopback Discord, a fake LLM that
calls tools of a declared plugin. What the model reads, what the channel shows (the
status line, the round-limit note), what history keeps."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel, Field

import hark
from hark.testing.fakes import FakeGenerator, fake_plugin, tool_call, tool_results
from hark.testing.harness import BotHarness

CHAT = {"trigger_names": ["robot"], "edit_interval": 0.05, "rate_limit": "0"}


class Roll(BaseModel):
    sides: int = Field(6, ge=2, le=100, description="faces of the die")


class Nothing(BaseModel):
    pass


class Tools:
    """The tool plugin's tools, and what they were asked."""

    def __init__(self) -> None:
        self.contexts: list[hark.ToolContext] = []
        tools = self

        @hark.tool(timeout=2)
        async def roll_die(args: Roll, ctx: hark.ToolContext) -> str:
            """Roll one die and say what came up."""
            tools.contexts.append(ctx)
            return str(min(4, args.sides))

        @hark.tool(permission="manage_guild")
        async def pin_notice(args: Nothing, ctx: hark.ToolContext) -> str:
            """Pin the server's notice (changes the server: needs Manage Server)."""
            tools.contexts.append(ctx)
            return "pinned"

        @hark.tool(timeout=0.3)
        async def hang(args: Nothing, ctx: hark.ToolContext) -> str:
            """Never answers."""
            await asyncio.sleep(30)
            return "late"

        @hark.tool(timeout=5)
        async def lookup(args: Nothing, ctx: hark.ToolContext) -> str:
            """Takes a moment."""
            await asyncio.sleep(0.6)
            return "found <@everyone> @here"

        self.all = [roll_die, pin_notice, hang, lookup]
        self.plugin = hark.Plugin(description="Tools for the tests", tools=self.all)


def calls(name: str, **arguments):
    """A model that calls ``name`` and then says what it got back."""

    def script(messages):
        results = tool_results(messages)
        if results:
            return f"Result: {' | '.join(results)}"
        return [tool_call(name, **arguments)]

    return script


async def start(tmp_path, generator, tools: Tools, **config) -> BotHarness:
    h = BotHarness(
        tmp_path,
        plugins={"fake_llm": fake_plugin(generator), "tools": tools.plugin},
        config={**CHAT, **config},
    )
    await h.start()
    return h


@pytest.mark.parametrize("streams", [True, False], ids=["streamed", "not-streamed"])
async def test_a_tool_call_its_result_then_the_answer(tmp_path, streams):
    tools = Tools()

    def script(messages):
        results = tool_results(messages)
        if results:
            return f"You rolled a {results[0]}."
        return ["Let me roll. ", tool_call("roll_die", sides=6)]

    gen = FakeGenerator(script, supports_tools=True, streams=streams, chunk_size=4)
    h = await start(tmp_path, gen, tools)
    try:
        reply = await h.ask("robot, roll a die")
        assert await h.final(reply) == "Let me roll. \n\nYou rolled a 4."
        # The model was offered the plugin's tools with their schema, then read the result.
        assert set(gen.offered_tools[0]) == {"roll_die", "pin_notice", "hang", "lookup"}
        spec = next(s for s in gen.requests[0].tools if s.name == "roll_die")
        assert spec.parameters["properties"]["sides"]["maximum"] == 100
        second = gen.requests[1].messages
        assert second[-2].role == "assistant" and second[-2].tool_calls[0].name == "roll_die"
        assert (second[-1].role, second[-1].content) == ("tool", "4")
        assert second[-1].tool_call_id == second[-2].tool_calls[0].id
        # The tool knew who asked, where, and had the bot's host.
        ctx = tools.contexts[0]
        assert (ctx.user_id, ctx.channel_id, ctx.guild_id) == (
            h.member.user.id,
            h.channel.id,
            h.guild.id,
        )
        assert isinstance(ctx.host, hark.api.Host)

        # History keeps the question and the final answer, once; no tool messages.
        entries = await h.history(2)
        assert [(e.role, e.content) for e in entries] == [
            ("user", "robot, roll a die"),
            ("assistant", "Let me roll. \n\nYou rolled a 4."),
        ]
        await h.final(await h.ask("robot, again"))
        later = gen.requests[-1].messages
        answers = [m for m in later if m.content == "Let me roll. \n\nYou rolled a 4."]
        assert len(answers) == 1 and answers[0].role == "assistant"
    finally:
        await h.close()


async def test_a_tool_needing_a_permission_is_refused_to_a_member_without_it(tmp_path):
    tools = Tools()
    gen = FakeGenerator(calls("pin_notice"), supports_tools=True)
    h = await start(tmp_path, gen, tools)
    try:
        refused = await h.final(await h.ask("robot, pin the notice"))
        assert "refused" in refused and "manage guild permission" in refused
        assert tools.contexts == []  # it never ran
        # The refusal is what the model read as the tool's result.
        assert gen.requests[1].messages[-1].role == "tool"
        assert "refused" in gen.requests[1].messages[-1].content

        allowed = await h.final(await h.ask("robot, pin the notice", author=h.admin))
        assert allowed == "Result: pinned"
        assert "manage_guild" in tools.contexts[0].request.permissions
    finally:
        await h.close()


async def test_a_hanging_tool_times_out_into_a_result_the_model_reads(tmp_path):
    tools = Tools()
    gen = FakeGenerator(calls("hang"), supports_tools=True)
    h = await start(tmp_path, gen, tools)
    try:
        text = await h.final(await h.ask("robot, wait for it", timeout=10))
        assert text == "Result: error: hang did not finish within 0.3s"
    finally:
        await h.close()


async def test_a_model_that_keeps_calling_tools_stops_at_the_round_limit(tmp_path):
    tools = Tools()

    def script(messages):
        if messages[-1].content.startswith("[No more tool calls"):
            return "I rolled a lot: 4."
        return [tool_call("roll_die")]

    gen = FakeGenerator(script, supports_tools=True)
    h = await start(tmp_path, gen, tools)
    try:
        await h.ask("!config chat tool_rounds 3", author=h.admin)
        reply = await h.ask("robot, roll for ever")
        text = await h.final(reply)
        assert text == "I rolled a lot: 4.\n-# (stopped after 3 rounds of tool calls)"
        assert len(tools.contexts) == 3
        assert [bool(o) for o in gen.offered_tools] == [True, True, True, False]
        # The note is for the user, not the model: history has the answer alone.
        entries = await h.history(2)
        assert entries[-1].content == "I rolled a lot: 4."
    finally:
        await h.close()


async def test_the_status_line_shows_while_a_tool_runs_then_goes(tmp_path):
    tools = Tools()
    gen = FakeGenerator(calls("lookup"), supports_tools=True)
    h = await start(tmp_path, gen, tools)
    try:
        reply = await h.ask("robot, look it up")
        assert reply.content == "-# using lookup…"
        text = await h.final(reply)
        assert text == "Result: found <@everyone> @here"
        assert "-# using lookup…" in reply.edits
        # Neither the status line nor the tool's text pinged anyone.
        assert not reply.mention_everyone and reply.mentions == []
        assert reply.allowed_mentions is not None and reply.allowed_mentions.get("parse") == []
    finally:
        await h.close()


async def test_a_generator_without_tool_support_is_offered_none(tmp_path):
    tools = Tools()
    gen = FakeGenerator("Plain answer.")
    h = await start(tmp_path, gen, tools)
    try:
        assert await h.final(await h.ask("robot, roll a die")) == "Plain answer."
        assert gen.offered_tools == [[]]
    finally:
        await h.close()


async def test_a_plugin_switched_off_in_a_server_offers_no_tools_there(tmp_path):
    tools = Tools()
    gen = FakeGenerator("ok", supports_tools=True)
    h = await start(tmp_path, gen, tools)
    try:
        await h.ask("!plugins disable tools", author=h.admin)
        await h.final(await h.ask("robot, roll a die"))
        assert gen.offered_tools[-1] == []
        listing = await h.ask("!plugins")
        assert "`tools` — **off** — tools" in listing.content
    finally:
        await h.close()
