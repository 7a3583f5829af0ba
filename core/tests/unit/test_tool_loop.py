"""hark.chat.toolloop: rounds of tool calls, their limits, and what the model reads."""

from __future__ import annotations

import asyncio
import json

import pytest
from pydantic import BaseModel, Field

import hark
from hark import PromptMessage, ToolCall
from hark.chat.toolloop import ToolLimits, ToolLoop, flatten
from hark.providers import ContextRequest
from hark.testing.fakes import FakeGenerator, tool_call, tool_results


class Roll(BaseModel):
    sides: int = Field(6, ge=2, le=100)


@hark.tool(timeout=2)
async def roll_die(args: Roll, ctx: hark.ToolContext) -> str:
    """Roll one die."""
    return str(min(4, args.sides))


class Empty(BaseModel):
    pass


@hark.tool(timeout=5)
async def slow(args: Empty, ctx: hark.ToolContext) -> str:
    """Takes its time."""
    await asyncio.sleep(10)
    return "late"


@hark.tool(permission="manage_messages")
async def purge(args: Empty, ctx: hark.ToolContext) -> str:
    """Delete messages."""
    return "purged"


REQUEST = ContextRequest(text="roll", guild_id=1, channel_id=2, user_id=3)
PROMPT = [PromptMessage("system", "be brief"), PromptMessage("user", "roll a d6", name="alice")]


def make_loop(gen, tools=(roll_die,), limits=None, request=REQUEST, on_status=None):
    return ToolLoop(
        gen,
        PROMPT,
        tools=list(tools),
        limits=limits or ToolLimits(),
        context=lambda tool: hark.ToolContext(request, host="HOST", settings=None),
        guild_id=1,
        channel_id=2,
        on_status=on_status,
    )


async def run(loop: ToolLoop) -> str:
    return "".join([delta async for delta in loop.stream()])


def answer_with_results(messages):
    results = tool_results(messages)
    return f"Results: {', '.join(results)}." if results else [tool_call("roll_die", sides=6)]


async def test_a_call_its_result_then_the_answer():
    gen = FakeGenerator(answer_with_results, supports_tools=True)
    statuses = []
    loop = make_loop(gen, on_status=statuses.append)
    assert await run(loop) == "Results: 4."
    assert statuses == ["using roll_die…"]
    assert loop.rounds == 1 and loop.notes == []
    # Round two carries the assistant's call and the tool's answer to it.
    second = gen.requests[1].messages
    assert second[:2] == PROMPT
    assert second[2] == PromptMessage(
        "assistant", "", tool_calls=(ToolCall("call_1", "roll_die", '{"sides": 6}'),)
    )
    assert second[3] == PromptMessage("tool", "4", name="roll_die", tool_call_id="call_1")
    assert gen.offered_tools == [["roll_die"], ["roll_die"]]
    assert gen.requests[0].tools[0].parameters["properties"]["sides"]["maximum"] == 100


async def test_calls_of_one_round_run_concurrently():
    started = []

    @hark.tool
    async def wait(args: Empty, ctx: hark.ToolContext) -> str:
        """Waits a little."""
        started.append(asyncio.get_running_loop().time())
        await asyncio.sleep(0.2)
        return "done"

    gen = FakeGenerator(
        [[tool_call("wait"), tool_call("wait"), tool_call("wait")], "All done."],
        supports_tools=True,
    )
    loop = make_loop(gen, tools=[wait])
    begun = asyncio.get_running_loop().time()
    assert await run(loop) == "All done."
    assert asyncio.get_running_loop().time() - begun < 0.5
    assert [m.tool_call_id for m in gen.requests[1].messages if m.role == "tool"] == [
        "call_1",
        "call_2",
        "call_3",
    ]


async def test_failures_reach_the_model_as_results():
    gen = FakeGenerator(
        [
            [
                ToolCall("a", "roll_die", "{not json"),
                ToolCall("b", "roll_die", '{"sides": 1000}'),
                ToolCall("c", "purge", "{}"),
                ToolCall("d", "no_such_tool", "{}"),
            ],
            "Sorry.",
        ],
        supports_tools=True,
    )
    loop = make_loop(gen, tools=[roll_die, purge])
    assert await run(loop) == "Sorry."
    results = {m.tool_call_id: m.content for m in gen.requests[1].messages if m.role == "tool"}
    assert "not valid JSON" in results["a"]
    assert "invalid arguments" in results["b"] and "sides" in results["b"]
    assert "refused" in results["c"] and "manage messages" in results["c"]
    assert "no tool called 'no_such_tool'" in results["d"]
    assert all(r.error for r in loop.results)


async def test_a_permission_the_member_holds_lets_the_tool_run():
    gen = FakeGenerator([[tool_call("purge")], "Done."], supports_tools=True)
    admin = ContextRequest(text="x", permissions=frozenset({"administrator"}))
    loop = make_loop(gen, tools=[purge], request=admin)
    await run(loop)
    assert loop.results[0].content == "purged" and not loop.results[0].error


async def test_the_round_limit_ends_with_a_round_without_tools_and_a_note():
    def script(messages):
        # A model that would call tools for ever, until it is told it can't.
        if messages[-1].role == "user" and messages[-1].content.startswith("[No more"):
            return "Best guess: 4."
        return ["Rolling. ", tool_call("roll_die")]

    calls_again = FakeGenerator(script, supports_tools=True)
    loop = make_loop(calls_again, limits=ToolLimits(rounds=2))
    text = await run(loop)
    assert text == "Rolling. \n\nRolling. \n\nBest guess: 4."
    assert loop.rounds == 2
    assert loop.notes == ["(stopped after 2 rounds of tool calls)"]
    assert calls_again.offered_tools == [["roll_die"], ["roll_die"], []]
    # The last round reads calls and results as text (some APIs refuse tool messages
    # in a request without tools).
    last = calls_again.requests[-1].messages
    assert not any(m.role == "tool" or m.tool_calls for m in last)
    assert "[called roll_die with {}]" in last[2].content
    assert last[3] == PromptMessage("user", "[result of roll_die: 4]")


async def test_a_hanging_tool_times_out_into_a_result():
    gen = FakeGenerator([[tool_call("slow")], "It timed out."], supports_tools=True)
    loop = make_loop(gen, tools=[slow], limits=ToolLimits(seconds=0.2))
    begun = asyncio.get_running_loop().time()
    assert "It timed out." in await run(loop)
    # The turn's tool time (0.2 s) cut the tool's own timeout (5 s) short.
    assert asyncio.get_running_loop().time() - begun < 2
    assert "did not finish within 0.2s" in loop.results[0].content
    # Its time is used up: the next round had no tools, and the user is told.
    assert gen.offered_tools == [["slow"], []]
    assert loop.notes == ["(stopped: tool calls used the 0.2s this turn may take)"]


async def test_no_tools_without_support_or_with_zero_rounds():
    plain = FakeGenerator("Just text.")
    assert await run(make_loop(plain)) == "Just text."
    assert plain.offered_tools == [[]]
    capable = FakeGenerator("Just text.", supports_tools=True)
    assert await run(make_loop(capable, limits=ToolLimits(rounds=0))) == "Just text."
    assert capable.offered_tools == [[]]


async def test_the_tool_gets_the_request_and_host():
    seen = []

    @hark.tool
    async def who(args: Empty, ctx: hark.ToolContext) -> dict:
        """Who asked."""
        seen.append(ctx)
        return {"user": ctx.user_id, "guild": ctx.guild_id}

    gen = FakeGenerator([[tool_call("who")], "ok"], supports_tools=True)
    loop = make_loop(gen, tools=[who])
    await run(loop)
    assert seen[0].request is REQUEST and seen[0].host == "HOST"
    assert json.loads(loop.results[0].content) == {"user": 3, "guild": 1}


async def test_a_cancelled_turn_cancels_its_tools():
    cancelled = asyncio.Event()

    @hark.tool
    async def forever(args: Empty, ctx: hark.ToolContext) -> str:
        """Never ends."""
        try:
            await asyncio.sleep(60)
        finally:
            cancelled.set()
        return ""

    gen = FakeGenerator([[tool_call("forever")], "never"], supports_tools=True)
    task = asyncio.create_task(run(make_loop(gen, tools=[forever])))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled.is_set()


def test_flatten_keeps_other_messages():
    call = ToolCall("1", "roll_die", '{"sides": 6}')
    messages = [
        PromptMessage("user", "roll", name="alice"),
        PromptMessage("assistant", "Rolling.", tool_calls=(call,)),
        PromptMessage("tool", "4", name="roll_die", tool_call_id="1"),
    ]
    flat = flatten(messages)
    assert flat[0] is messages[0]
    assert flat[1] == PromptMessage("assistant", 'Rolling.\n[called roll_die with {"sides": 6}]')
    assert flat[2] == PromptMessage("user", "[result of roll_die: 4]")


async def test_tools_wait_for_before_tools_and_a_turn_cancelled_meanwhile_runs_none():
    ran = []

    @hark.tool
    async def act(args: Empty, ctx: hark.ToolContext) -> str:
        """Acts on the world."""
        ran.append(1)
        return "done"

    go = asyncio.Event()
    gen = FakeGenerator([[tool_call("act")], "Done."], supports_tools=True)
    loop = make_loop(gen, tools=[act])
    loop.before_tools = go.wait
    task = asyncio.create_task(run(loop))
    await asyncio.sleep(0.05)
    assert ran == [] and not task.done()  # held, as a speculative voice reply is
    go.set()
    assert await task == "Done." and ran == [1]

    held = make_loop(FakeGenerator([[tool_call("act")], "x"], supports_tools=True), tools=[act])
    held.before_tools = asyncio.Event().wait
    task = asyncio.create_task(run(held))
    await asyncio.sleep(0.05)
    task.cancel()  # the guess was discarded
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ran == [1]
