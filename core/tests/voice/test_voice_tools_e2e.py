"""A voice turn that uses a tool: real discord.py voice, loopback voice server, real
speech from espeak-ng; a fake LLM calls a plugin's tool and speaks the answer."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel
from voice_support import CONFIG, in_voice, plugin, wait_for_post

import hark
from hark.testing.fakes import (
    FakeGenerator,
    FakeSynthesizer,
    FakeTranscriber,
    tool_call,
    tool_results,
)
from hark.testing.harness import BotHarness


class Nothing(BaseModel):
    pass


async def test_a_voice_turn_calls_a_tool_and_speaks_the_answer(tmp_path, speech):
    seen: list[hark.ToolContext] = []

    @hark.tool(permission="speak")
    async def lights(args: Nothing, ctx: hark.ToolContext) -> str:
        """Turn the kitchen lights on (needs the Speak permission, as in voice)."""
        seen.append(ctx)
        return "the kitchen lights are on"

    def script(messages):
        results = tool_results(messages)
        return f"Done: {results[0]}." if results else [tool_call("lights")]

    generator = FakeGenerator(script, supports_tools=True)
    synthesizer = FakeSynthesizer(seconds_per_char=0.005)
    voice = plugin(FakeTranscriber("please turn on the kitchen lights"), synthesizer, generator)
    tools = hark.Plugin(description="Home", tools=[lights])
    async with BotHarness(tmp_path, plugins={"v": voice, "home": tools}, config=CONFIG) as h:
        await in_voice(h, h.member)
        said = asyncio.create_task(wait_for_post(h, "🔊"))
        await h.server.speak(h.member, speech)
        assert await said == "🔊 Done: the kitchen lights are on."
        assert synthesizer.texts == ["Done: the kitchen lights are on."]
        # The tool ran for the speaker, with what they hold in the voice channel.
        ctx = seen[0]
        assert ctx.request.kind == "voice" and ctx.user_id == h.member.user.id
        assert {"speak", "connect"} <= ctx.request.permissions
        assert generator.offered_tools[0] == ["lights"]
        # History keeps what was heard and what was said, once.
        async with asyncio.timeout(5):
            while await h.bot.runtime.history.count(h.channel.id) < 2:
                await asyncio.sleep(0.05)
        entries = await h.bot.runtime.history.recent(h.channel.id, 10)
        assert [(e.role, e.content) for e in entries] == [
            ("user", "please turn on the kitchen lights"),
            ("assistant", "Done: the kitchen lights are on."),
        ]


async def test_a_voice_turn_at_the_round_limit_posts_the_note(tmp_path, speech):
    @hark.tool
    async def lights(args: Nothing, ctx: hark.ToolContext) -> str:
        """Turn the kitchen lights on."""
        return "still off"

    calls = 0

    def keeps_calling(messages):
        nonlocal calls  # a model that keeps calling while it is offered tools
        calls += 1
        return "I could not turn them on." if calls > 2 else [tool_call("lights")]

    generator = FakeGenerator(keeps_calling, supports_tools=True)
    voice = plugin(FakeTranscriber("lights please"), FakeSynthesizer(), generator)
    tools = hark.Plugin(description="Home", tools=[lights])
    async with BotHarness(tmp_path, plugins={"v": voice, "home": tools}, config=CONFIG) as h:
        admin = h.server.owner
        await h.ask("!config chat tool_rounds 2", author=admin)
        await in_voice(h, h.member)
        note = asyncio.create_task(wait_for_post(h, "(stopped after"))
        await h.server.speak(h.member, speech)
        assert await note == "(stopped after 2 rounds of tool calls)"
        assert generator.offered_tools == [["lights"], ["lights"], []]
