"""Images and tools through the real ``ollama`` client against the loopback fake:
what reaches Ollama's request body, tool calls coming back (streamed or not),
results going out on the next round, the per-server switches, and the models that
cannot take them (asked again without them, and remembered)."""

from __future__ import annotations

import asyncio
import base64
import enum
import json
import logging
from typing import Literal

import httpx
import pytest
from fake_ollama import FakeOllama, tool_call
from hark_llm_ollama import generator as generator_module
from hark_llm_ollama.wire import ollama_tool
from pydantic import BaseModel, Field

from hark import ImagePart, PromptMessage, ToolCall, ToolSpec
from hark.providers.errors import BadOutputError, ConfigurationError, ProviderError
from hark.testing.contracts import solid_png

PNG = solid_png(4, 4)
CAT = ImagePart(PNG, "image/png", "cat.png")
LOOK = [
    PromptMessage("system", "You are Hark."),
    PromptMessage("user", "what is this?", name="alice", images=(CAT,)),
]
WEATHER = ToolSpec(
    "get_weather",
    "Get the current weather in a city.",
    {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "the city's name"}},
        "required": ["city"],
    },
)
ASK = [PromptMessage("user", "Weather in Paris?", name="alice")]


async def items(stream) -> list[str | ToolCall]:
    return [item async for item in stream]


def calls_of(got: list[str | ToolCall]) -> list[ToolCall]:
    return [item for item in got if isinstance(item, ToolCall)]


def text_of(got: list[str | ToolCall]) -> str:
    return "".join(item for item in got if isinstance(item, str))


async def failure(stream) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await items(stream)
    return caught.value


async def put(store, key, value, scope="server", target=1) -> None:
    await store.set_value("llm_ollama", key, value, scope, target)


# -- images ----------------------------------------------------------------------


async def test_an_image_goes_in_the_messages_images_as_base64(fake_ollama, make_generator):
    generator = make_generator()
    assert generator.supports_vision
    await generator.complete(LOOK)
    last = fake_ollama.last_chat["messages"][-1]
    assert last == {
        "role": "user",
        "content": "alice: what is this?",
        "images": [base64.b64encode(PNG).decode()],
    }
    assert fake_ollama.last_images == [PNG]
    # A message without images has no images field at all.
    assert fake_ollama.last_chat["messages"][0] == {"role": "system", "content": "You are Hark."}


async def test_several_images_in_several_messages_keep_their_order(fake_ollama, make_generator):
    other = solid_png(2, 2, (0, 0, 255))
    await make_generator().complete(
        [
            PromptMessage("user", "first", images=(CAT,)),
            PromptMessage("assistant", "A red square."),
            PromptMessage("user", "and these?", images=(ImagePart(other, "image/png"), CAT)),
        ]
    )
    assert [len(m.get("images", [])) for m in fake_ollama.last_chat["messages"]] == [1, 0, 2]
    assert fake_ollama.last_images == [PNG, other, PNG]


async def test_vision_switched_off_in_a_server_sends_the_note(
    fake_ollama, make_generator, hark_settings_store
):
    generator = make_generator()
    generator.bind(hark_settings_store.for_plugin("llm_ollama"))
    await put(hark_settings_store, "vision", False)

    await generator.complete(LOOK, guild_id=1)
    last = fake_ollama.last_chat["messages"][-1]
    assert "images" not in last
    assert last["content"] == "alice: what is this?\n[image not shown: cat.png]"

    await generator.complete(LOOK, guild_id=2)  # another server keeps the default
    assert fake_ollama.last_images == [PNG]


NO_IMAGES = (
    "Failed to create new sequence: failed to process inputs: this model is missing data"
    " required for image input"
)
NOTE = "alice: what is this?\n[image not shown: cat.png]"


@pytest.mark.parametrize("streamed", [True, False], ids=["streamed", "not-streamed"])
async def test_a_model_that_cannot_see_reads_the_notes_instead(
    fake_ollama, make_generator, streamed, caplog
):
    """Ollama does not refuse images up front: the runner fails on them (an error line
    in the stream, or a 500 for a reply that is not streamed). Nothing was said yet, so
    the same request goes again with the core's notes, and the model is remembered."""
    fake_ollama.add_model("gemma2", capabilities=("completion", "tools"))
    fake_ollama.ignore_stream = not streamed
    fake_ollama.reply = "I can't see it, but you sent cat.png."
    generator = make_generator(model="gemma2")
    with caplog.at_level(logging.WARNING):
        assert await generator.complete(LOOK) == fake_ollama.reply
        refused, again = fake_ollama.chat_requests
        assert refused["messages"][-1]["images"] == [base64.b64encode(PNG).decode()]
        assert "images" not in again["messages"][-1]
        assert again["messages"][-1]["content"] == NOTE
        assert generator.lacks("gemma2:latest") == {"vision"}

        # Later turns send the notes at once: one request each.
        fake_ollama.reset()
        for _ in range(2):
            assert await generator.complete(LOOK) == fake_ollama.reply
        assert fake_ollama.count() == 2
        assert [body["messages"][-1]["content"] for body in fake_ollama.chat_requests] == [
            NOTE,
            NOTE,
        ]
    warned = [r.getMessage() for r in caplog.records if "cannot read images" in r.getMessage()]
    assert warned == [
        f"model `gemma2` at {fake_ollama.url} cannot read images; sending notes in their place"
        " (set `!config llm_ollama vision off` to stop sending them)"
    ]
    # Another model on the same server still gets the images.
    await generator.complete(LOOK, model="llama3.2")
    assert fake_ollama.last_images == [PNG]


async def test_a_model_that_can_do_neither_gets_both_left_out(fake_ollama, make_generator):
    """Ollama refuses the tools first, the runner then the images: each is left out
    once, and the third request answers."""
    fake_ollama.add_model("gemma2", capabilities=("completion",))
    fake_ollama.reply = "Just text."
    generator = make_generator(model="gemma2")
    assert text_of(await items(generator.generate(LOOK, tools=[WEATHER]))) == "Just text."
    bodies = fake_ollama.chat_requests
    assert [(bool(b["tools"]), "images" in b["messages"][-1]) for b in bodies] == [
        (True, True),
        (False, True),
        (False, False),
    ]
    assert generator.lacks("gemma2") == {"tools", "vision"}
    fake_ollama.reset()
    await items(generator.generate(LOOK, tools=[WEATHER]))
    assert fake_ollama.count() == 1
    assert fake_ollama.last_chat["tools"] == []
    assert fake_ollama.last_chat["messages"][-1]["content"] == NOTE


@pytest.mark.parametrize(
    ("prompt", "tools", "error", "expected"),
    [
        (
            LOOK,
            [],
            NO_IMAGES,
            "model `llama3.2` cannot read images; choose another with `!model`, or switch"
            " images off here with `!config llm_ollama vision off`",
        ),
        (
            ASK,
            [WEATHER],
            "registry.ollama.ai/library/llama3.2:latest does not support tools",
            "model `llama3.2` does not support tools; choose another with `!model`, or switch"
            " tools off here with `!config llm_ollama tools off`",
        ),
    ],
    ids=["images", "tools"],
)
async def test_a_refusal_after_part_of_the_reply_is_still_an_error(
    fake_ollama, make_generator, prompt, tools, error, expected
):
    """Once text was handed on, asking again would post it twice: the error says what
    to switch off, as before. The model is remembered all the same."""
    fake_ollama.reply = "It looks like a"
    fake_ollama.break_stream("error_line", after=2, error=error)
    generator = make_generator()
    got: list = []
    with pytest.raises(ConfigurationError) as caught:
        async for item in generator.generate(prompt, tools=tools):
            got.append(item)
    assert got == ["It", " looks"]
    assert caught.value.message == expected
    assert caught.value.user_message.startswith("Sorry, model `llama3.2`")
    assert fake_ollama.count() == 1  # never replayed
    assert generator.lacks("llama3.2") == {"tools" if tools else "vision"}


# -- tools: what is offered ------------------------------------------------------


class Unit(enum.Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


class Forecast(BaseModel):
    city: str = Field(description="the city's name")
    days: int | None = Field(None, ge=1, le=7, description="how many days ahead")
    detail: Literal["short", "long"] = "short"
    period: Literal["day", "night"] | None = None
    unit: Unit = Unit.CELSIUS
    tags: list[str] = Field(default_factory=list, max_length=3)


async def test_tools_are_offered_in_ollamas_format(fake_ollama, make_generator):
    generator = make_generator()
    assert generator.supports_tools
    await items(generator.generate(ASK, tools=[WEATHER]))
    assert fake_ollama.last_chat["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Get the current weather in a city.",
                "parameters": {
                    "type": "object",
                    "required": ["city"],
                    "properties": {"city": {"type": "string", "description": "the city's name"}},
                },
            },
        }
    ]


async def test_a_pydantic_schema_keeps_its_types_choices_and_limits(fake_ollama, make_generator):
    """The client keeps only type/items/description/enum of a property: Optional,
    Literal and Enum fields come through as type lists and enums, the limits it would
    drop are said in the description."""
    schema = Forecast.model_json_schema()
    spec = ToolSpec("forecast", "The forecast.", schema)
    await items(make_generator().generate(ASK, tools=[spec]))
    (sent,) = fake_ollama.last_chat["tools"]
    parameters = sent["function"]["parameters"]
    assert parameters["required"] == ["city"]
    assert parameters["properties"] == {
        "city": {"type": "string", "description": "the city's name"},
        "days": {"type": ["integer", "null"], "description": "how many days ahead (1 to 7)"},
        "detail": {"type": "string", "enum": ["short", "long"], "description": 'default "short"'},
        "period": {"type": ["string", "null"], "enum": ["day", "night", None]},
        "unit": {
            "type": "string",
            "enum": ["celsius", "fahrenheit"],
            "description": 'default "celsius"',
        },
        "tags": {"type": "array", "items": {"type": "string"}, "description": "at most 3 items"},
    }
    assert parameters["$defs"] == schema["$defs"]


async def test_no_tools_field_without_tools(fake_ollama, make_generator):
    await make_generator().complete(ASK)
    assert fake_ollama.last_chat["tools"] == []  # what the client sends for none


# -- tools: calls coming back ------------------------------------------------------


async def test_a_streamed_tool_call_is_yielded_as_soon_as_it_is_complete(
    fake_ollama, make_generator
):
    fake_ollama.reply = ["Let me check.", tool_call("get_weather", city="Paris")]
    release = fake_ollama.hold(after=4)  # the text, the call, then the server waits
    stream = make_generator().generate(ASK, tools=[WEATHER])
    got = [await asyncio.wait_for(anext(stream), 5) for _ in range(4)]
    assert got == [
        "Let",
        " me",
        " check.",
        ToolCall("call_1", "get_weather", '{"city": "Paris"}'),
    ]
    assert fake_ollama.open_streams == 1  # the final `done` line has not been sent yet
    release.set()
    assert [item async for item in stream] == []


async def test_several_calls_in_one_line_and_across_lines(fake_ollama, make_generator):
    fake_ollama.reply = [
        tool_call("get_weather", city="Paris"),
        tool_call("get_weather", city="Oslo"),
        "and also",
        tool_call("get_weather", city="Lima"),
    ]
    got = await items(make_generator().generate(ASK, tools=[WEATHER]))
    assert [(c.id, json.loads(c.arguments)["city"]) for c in calls_of(got)] == [
        ("call_1", "Paris"),
        ("call_2", "Oslo"),
        ("call_3", "Lima"),
    ]
    assert text_of(got) == "and also"


async def test_a_reply_that_is_not_streamed_brings_text_and_calls(fake_ollama, make_generator):
    """A proxy that drops ``stream`` answers with one object holding everything."""
    fake_ollama.ignore_stream = True
    fake_ollama.reply = ["Checking. ", tool_call("get_weather", city="Paris", days=2)]
    got = await items(make_generator().generate(ASK, tools=[WEATHER]))
    assert got == ["Checking. ", ToolCall("call_1", "get_weather", '{"city": "Paris", "days": 2}')]


async def test_arguments_keep_unicode_and_nesting(fake_ollama, make_generator):
    fake_ollama.reply = [tool_call("get_weather", city="Zürich", around={"km": [1, 2]})]
    (call,) = calls_of(await items(make_generator().generate(ASK, tools=[WEATHER])))
    assert call.arguments == '{"city": "Zürich", "around": {"km": [1, 2]}}'


async def test_a_call_without_a_name_is_passed_on_for_the_core_to_answer(
    fake_ollama, make_generator
):
    """The core's loop answers a call of no known tool with an error result the model
    reads; the plugin hands on what Ollama said."""
    fake_ollama.reply = [{"function": {"name": "", "arguments": {}}}]
    (call,) = calls_of(await items(make_generator().generate(ASK, tools=[WEATHER])))
    assert (call.name, call.arguments) == ("", "{}")


@pytest.mark.parametrize(
    "function",
    [{"name": "get_weather", "arguments": '{"city": "Par'}, {"arguments": {"city": "Paris"}}],
    ids=["arguments-text", "no-name"],
)
async def test_a_call_the_client_cannot_parse_is_bad_output(fake_ollama, make_generator, function):
    """Ollama's own server always sends arguments as an object; a line that breaks that
    (a proxy's) fails the ``ollama`` client's parsing: bad output, not retried."""
    fake_ollama.reply = ["Let me check.", {"function": function}]
    error = await failure(make_generator().generate(ASK, tools=[WEATHER]))
    assert isinstance(error, BadOutputError)
    assert error.message == f"Ollama at {fake_ollama.url} sent a malformed reply"
    assert fake_ollama.count() == 1


async def test_a_call_when_none_were_offered_is_bad_output(fake_ollama, make_generator):
    fake_ollama.reply = [tool_call("get_weather", city="Paris")]
    error = await failure(make_generator().generate(ASK))
    assert isinstance(error, BadOutputError)
    assert "no tools were offered" in error.message


async def test_a_stream_that_breaks_after_a_call_says_so(fake_ollama, make_generator):
    fake_ollama.reply = [tool_call("get_weather", city="Paris"), "more text"]
    fake_ollama.break_stream("disconnect", after=1)
    got: list = []
    with pytest.raises(BadOutputError) as caught:
        async for item in make_generator().generate(ASK, tools=[WEATHER]):
            got.append(item)
    assert calls_of(got) and caught.value.message.endswith("mid-reply, after 1 tool call")
    assert fake_ollama.count() == 1  # never replayed: the call was handed on


# -- tools: results going back -----------------------------------------------------


async def test_calls_and_results_go_back_in_ollamas_format(fake_ollama, make_generator):
    call = ToolCall("call_1", "get_weather", '{"city": "Paris"}')
    followed = [
        *ASK,
        PromptMessage("assistant", "Let me check.", tool_calls=(call,)),
        PromptMessage("tool", '{"sky": "sunny"}', name="get_weather", tool_call_id="call_1"),
    ]
    await items(make_generator().generate(followed, tools=[WEATHER]))
    assert fake_ollama.last_chat["messages"][1:] == [
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
        },
        {"role": "tool", "content": '{"sky": "sunny"}', "tool_name": "get_weather"},
    ]


async def test_a_result_without_a_name_is_named_after_its_call(fake_ollama, make_generator):
    calls = (ToolCall("a", "get_weather", "{}"), ToolCall("b", "get_time", '{"zone": "UTC"}'))
    await items(
        make_generator().generate(
            [
                *ASK,
                PromptMessage("assistant", "", tool_calls=calls),
                PromptMessage("tool", "12:00", tool_call_id="b"),
                PromptMessage("tool", "sunny", tool_call_id="a"),
            ],
            tools=[WEATHER],
        )
    )
    assistant, first, second = fake_ollama.last_chat["messages"][1:]
    # the client leaves out an empty content; Ollama takes that as ""
    assert assistant == {
        "role": "assistant",
        "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {}}},
            {"function": {"name": "get_time", "arguments": {"zone": "UTC"}}},
        ],
    }
    assert (first["tool_name"], second["tool_name"]) == ("get_time", "get_weather")


async def test_arguments_that_are_not_an_object_stay_readable_as_text(fake_ollama, make_generator):
    """Ollama takes a call's arguments only as an object (the fake refuses anything
    else, as Ollama's server does): a call whose text was not one is said in words."""
    bad = ToolCall("call_1", "get_weather", '{"city": "Par')
    await items(
        make_generator().generate(
            [
                *ASK,
                PromptMessage("assistant", "Checking.", tool_calls=(bad,)),
                PromptMessage("tool", "error: not JSON", name="get_weather", tool_call_id="call_1"),
            ],
            tools=[WEATHER],
        )
    )
    assistant = fake_ollama.last_chat["messages"][1]
    assert assistant == {
        "role": "assistant",
        "content": 'Checking.\n[called get_weather with {"city": "Par]',
    }


# -- tools: the switch and the models without them ------------------------------------


async def test_tools_switched_off_in_a_server_are_not_offered(
    fake_ollama, make_generator, hark_settings_store
):
    generator = make_generator()
    generator.bind(hark_settings_store.for_plugin("llm_ollama"))
    await put(hark_settings_store, "tools", False)

    await items(generator.generate(ASK, tools=[WEATHER], guild_id=1))
    assert fake_ollama.last_chat["tools"] == []
    await items(generator.generate(ASK, tools=[WEATHER], guild_id=2))
    assert fake_ollama.last_chat["tools"][0]["function"]["name"] == "get_weather"

    # Nothing was offered there, so a call would be the server's mistake.
    fake_ollama.reply = [tool_call("get_weather", city="Paris")]
    error = await failure(generator.generate(ASK, tools=[WEATHER], guild_id=1))
    assert isinstance(error, BadOutputError) and "no tools were offered" in error.message


async def test_a_model_without_tools_answers_in_text(fake_ollama, make_generator, caplog):
    """Ollama's 400 "does not support tools": the same request again without them, and
    the model is remembered, so later turns offer none (no refused request each turn)."""
    fake_ollama.add_model("gemma2", capabilities=("completion", "vision"))
    fake_ollama.reply = "Paris is sunny, I think."
    generator = make_generator(model="gemma2")
    with caplog.at_level(logging.WARNING):
        got = await items(generator.generate(ASK, tools=[WEATHER]))
        assert got and text_of(got) == "Paris is sunny, I think."
        refused, again = fake_ollama.chat_requests
        assert refused["tools"][0]["function"]["name"] == "get_weather"
        assert again["tools"] == []
        assert again["messages"] == refused["messages"]
        assert generator.lacks("gemma2") == {"tools"}

        fake_ollama.reset()
        for _ in range(2):
            await items(generator.generate(ASK, tools=[WEATHER]))
        assert [body["tools"] for body in fake_ollama.chat_requests] == [[], []]
    warned = [r.getMessage() for r in caplog.records if "support tools" in r.getMessage()]
    assert warned == [
        f"model `gemma2` at {fake_ollama.url} does not support tools; answering without them"
        " (set `!config llm_ollama tools off` to stop offering them)"
    ]
    # The memory is per server and model: another model still gets the tools...
    await items(generator.generate(ASK, tools=[WEATHER], model="llama3.2"))
    assert fake_ollama.last_chat["tools"][0]["function"]["name"] == "get_weather"
    # ...and the same model on another server is asked afresh.
    async with FakeOllama(models=("gemma2",)) as other:
        await items(make_generator(host=other.url, model="gemma2").generate(ASK, tools=[WEATHER]))
        assert other.last_chat["tools"]


async def test_what_a_model_lacks_is_bounded_and_forgotten_once_it_is_gone(
    fake_ollama, make_generator, monkeypatch
):
    fake_ollama.add_model("gemma2", capabilities=("completion",))
    generator = make_generator(model="gemma2")
    await items(generator.generate(ASK, tools=[WEATHER]))
    assert generator.lacks("gemma2") == {"tools"}
    await generator.fetch_models()  # still pulled: still known
    assert generator.lacks("gemma2") == {"tools"}
    fake_ollama.remove_model("gemma2")
    await generator.fetch_models()  # removed: checked afresh once pulled again
    assert generator.lacks("gemma2") == frozenset()

    monkeypatch.setattr(generator_module, "LACKING_SIZE", 3)
    for n in range(5):
        generator._learn(fake_ollama.url, f"model{n}", "tools")
    remembered = [bool(generator.lacks(f"model{n}")) for n in range(5)]
    assert remembered == [False, False, True, True, True]
    generator.forget_lacking()
    assert not generator.lacks("model4")


async def test_the_fake_answers_as_ollamas_server_does(fake_ollama):
    """The bodies the translations above read are Ollama's own (server/routes.go)."""
    fake_ollama.add_model("gemma2", capabilities=("completion",))
    async with httpx.AsyncClient(base_url=fake_ollama.url) as client:
        body = {"model": "gemma2", "messages": [], "tools": [ollama_tool(WEATHER)]}
        refused = await client.post("/api/chat", json=body)
        assert (refused.status_code, refused.json()) == (
            400,
            {"error": "registry.ollama.ai/library/gemma2:latest does not support tools"},
        )
        shown = await client.post("/api/show", json={"model": "gemma2"})
        assert shown.json()["capabilities"] == ["completion"]
        bad = {"model": "gemma2", "messages": [{"role": "user", "images": ["%%%"]}]}
        assert (await client.post("/api/chat", json=bad)).status_code == 400
        streamed = await client.post("/api/chat", json={**body, "model": "llama3.2"})
        lines = [json.loads(line) for line in streamed.text.splitlines()]
        assert [line["done"] for line in lines][-1] is True
