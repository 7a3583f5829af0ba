"""The Generator wrapper's capability flags: images for vision only, tools for tool
support only, ToolCall items checked; and the fake generator's tool scripting."""

from __future__ import annotations

import json

import pytest

from hark import BadOutputError, ImagePart, PromptMessage, ToolCall, ToolSpec
from hark.providers import GenerationRequest, Generator
from hark.testing.fakes import FakeGenerator, tool_call, tool_results

CAT = ImagePart(b"\x89PNG...", "image/png", "cat.png")
DOG = ImagePart(b"\xff\xd8...", "image/jpeg", "dog.jpg")
SPEC = ToolSpec("roll_die", "Roll a die.", {"type": "object", "properties": {}})


async def collect(stream):
    return [item async for item in stream]


async def test_images_become_notes_naming_each_for_a_generator_without_vision():
    gen = FakeGenerator("ok")
    messages = [
        PromptMessage("user", "look at these", name="alice", images=(CAT, DOG)),
        PromptMessage("user", "", images=(ImagePart(b"x", "image/png"),)),
    ]
    assert await gen.complete(messages) == "ok"
    seen = gen.requests[-1].messages
    assert not any(m.images for m in seen)
    assert seen[0].content == "look at these\n[image not shown: cat.png] [image not shown: dog.jpg]"
    assert seen[0].name == "alice"
    assert seen[1].content == "[image not shown]"
    # The caller's messages are untouched.
    assert messages[0].images == (CAT, DOG)


async def test_images_reach_a_vision_generator_as_they_are():
    gen = FakeGenerator("a cat", supports_vision=True)
    message = PromptMessage("user", "what is it?", images=(CAT,))
    await gen.complete([message])
    assert gen.requests[-1].messages == [message]


async def test_tools_reach_only_a_generator_that_supports_them():
    plain = FakeGenerator("no tools here")
    items = await collect(plain.generate([PromptMessage("user", "hi")], tools=[SPEC]))
    assert "".join(items) == "no tools here"
    assert plain.requests[-1].tools == []

    capable = FakeGenerator([[tool_call("roll_die", sides=6)]], supports_tools=True)
    items = await collect(capable.generate([PromptMessage("user", "roll")], tools=[SPEC]))
    assert capable.requests[-1].tools == [SPEC]
    assert capable.offered_tools == [["roll_die"]]
    assert items == [ToolCall("call_1", "roll_die", '{"sides": 6}')]  # the id filled in


async def test_a_tool_call_when_no_tools_were_offered_is_bad_output():
    gen = FakeGenerator([["Sure.", tool_call("roll_die")]], supports_tools=True)
    with pytest.raises(BadOutputError, match="no tools were offered"):
        await collect(gen.generate([PromptMessage("user", "roll")]))


async def test_a_tool_call_without_tool_support_is_bad_output():
    # The flag is off, so no tools are passed on, so a call cannot be an answer.
    gen = FakeGenerator([[tool_call("roll_die")]])
    with pytest.raises(BadOutputError):
        await collect(gen.generate([PromptMessage("user", "roll")], tools=[SPEC]))


async def test_a_plugin_id_is_kept_and_other_items_are_refused():
    class Odd(Generator):
        supports_tools = True

        async def _impl(self, request: GenerationRequest):
            yield ToolCall("abc", "roll_die", "{}")
            yield 42

    items = []
    with pytest.raises(BadOutputError, match="int"):
        async for item in Odd().generate([PromptMessage("user", "x")], tools=[SPEC]):
            items.append(item)
    assert items == [ToolCall("abc", "roll_die", "{}")]


async def test_complete_is_text_only():
    gen = FakeGenerator("Hello there.", supports_tools=True)
    assert await gen.complete([PromptMessage("user", "hi")]) == "Hello there."
    assert await gen.complete([PromptMessage("user", "hi")], tools=()) == "Hello there."
    with pytest.raises(TypeError):
        await gen.complete([PromptMessage("user", "hi")], tools=[SPEC])


async def test_the_fake_streams_text_and_calls_in_order_or_all_at_once():
    script = [["Let me ", "roll.", tool_call("roll_die", sides=20), tool_call("roll_die")]]
    streamed = FakeGenerator(script, chunk_size=3, supports_tools=True)
    items = await collect(streamed.generate([PromptMessage("user", "x")], tools=[SPEC]))
    assert items[:3] == ["Let", " me", " "]
    assert [i.id for i in items if isinstance(i, ToolCall)] == ["call_1", "call_2"]

    whole = FakeGenerator(script, chunk_size=3, streams=False, supports_tools=True)
    items = await collect(whole.generate([PromptMessage("user", "x")], tools=[SPEC]))
    assert items[0] == "Let me roll."
    assert [type(i) for i in items] == [str, ToolCall, ToolCall]


async def test_a_scripted_reply_can_read_the_tool_results():
    def answer(messages):
        results = tool_results(messages)
        return f"You rolled {results[0]}." if results else [tool_call("roll_die")]

    gen = FakeGenerator(answer, supports_tools=True)
    first = await collect(gen.generate([PromptMessage("user", "roll")], tools=[SPEC]))
    assert isinstance(first[0], ToolCall)
    followed = [
        PromptMessage("user", "roll"),
        PromptMessage("assistant", "", tool_calls=(first[0],)),
        PromptMessage("tool", "4", name="roll_die", tool_call_id=first[0].id),
    ]
    assert await gen.complete(followed) == "You rolled 4."


async def test_fail_after_chars_still_breaks_the_stream():
    gen = FakeGenerator("abcdefghij", chunk_size=4, fail_after_chars=6)
    seen = []
    with pytest.raises(Exception, match="broke"):
        async for delta in gen.generate([PromptMessage("user", "x")]):
            seen.append(delta)
    assert "".join(seen) == "abcdef"


def test_a_scripted_tool_call_may_have_arguments_called_name_and_id():
    call = tool_call("lookup", "call_9", name="Ada", id=7)
    assert (call.name, call.id) == ("lookup", "call_9")
    assert json.loads(call.arguments) == {"name": "Ada", "id": 7}
