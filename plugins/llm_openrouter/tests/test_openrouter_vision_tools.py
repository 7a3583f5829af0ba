"""Images and tool calls through the real ``openai`` client against the loopback server:
what the request carries (in the API's format, checked by the fake as the API checks
it), tool calls read from streamed pieces and from whole responses, results sent
back, the per-server switches, and models that take neither (the request is sent
again without them, and the model remembered as lacking them)."""

from __future__ import annotations

import base64
import json
import logging

import hark_llm_openrouter.generator as generator_module
import pytest
from fake_openai_chat import (
    NO_IMAGES,
    NO_TOOLS,
    FakeToolCall,
    always_calls,
    call_then_answer,
    tool_call,
)
from hark_llm_openrouter.generator import Lack
from openrouter_support import PLUGIN_ID

from hark import ImagePart, PromptMessage, ToolCall, ToolSpec
from hark.providers.errors import BadOutputError, ConfigurationError, ProviderStatusError
from hark.testing.contracts import solid_png

CAT = ImagePart(solid_png(rgb=(1, 2, 3)), "image/png", "cat.png")
WEATHER = ToolSpec(
    "get_weather",
    "Get the weather in a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
CLOCK = ToolSpec("get_time", "The time now.", {"type": "object", "properties": {}})
ASK = [
    PromptMessage("system", "You are Hark."),
    PromptMessage("user", "what is the weather in Paris?", name="alice"),
]


async def items(generator, messages=ASK, **kwargs) -> list[str | ToolCall]:
    return [item async for item in generator.generate(messages, **kwargs)]


async def failure(generator, messages=ASK, **kwargs) -> Exception:
    with pytest.raises(Exception) as caught:
        await items(generator, messages, **kwargs)
    return caught.value


async def until_failure(generator, messages=ASK, **kwargs) -> tuple[list, Exception]:
    """What was yielded before the reply failed, and the failure."""
    got: list[str | ToolCall] = []
    with pytest.raises(Exception) as caught:
        async for item in generator.generate(messages, **kwargs):
            got.append(item)
    return got, caught.value


def lack_warnings(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == f"hark.provider.{PLUGIN_ID}" and r.levelno == logging.WARNING
    ]


def decoded(url: str) -> tuple[str, bytes]:
    head, data = url.split(",", 1)
    assert head.endswith(";base64")
    return head[len("data:") : -len(";base64")], base64.b64decode(data)


# -- images -------------------------------------------------------------------------


async def test_an_image_reaches_the_request_as_an_image_url_part(server, make_generator):
    prompt = [*ASK[:1], PromptMessage("user", "what is this?", name="alice", images=(CAT,))]
    assert await make_generator().complete(prompt) == server.reply
    last = server.last_chat.messages[-1]
    assert last["role"] == "user"
    text, image = last["content"]
    assert text == {"type": "text", "text": "alice: what is this?"}
    assert image["type"] == "image_url" and set(image["image_url"]) == {"url"}
    assert decoded(image["image_url"]["url"]) == ("image/png", CAT.data)
    # Messages without images keep plain string content.
    assert server.last_chat.messages[0] == {"role": "system", "content": "You are Hark."}


async def test_several_images_and_an_image_in_a_bot_message(server, make_generator):
    dog = ImagePart(solid_png(rgb=(9, 9, 9)), "image/jpeg", "dog.jpg")
    prompt = [
        PromptMessage("assistant", "Here is my drawing.", images=(dog,)),
        PromptMessage("user", "", name=None, images=(CAT, dog)),
    ]
    await make_generator().complete(prompt)
    bot, user = server.last_chat.messages
    # The API takes images from the user only: the bot's is named instead.
    assert bot == {
        "role": "assistant",
        "content": "Here is my drawing.\n[image not shown: dog.jpg]",
    }
    # No words: only the image parts (an empty text part is refused by some servers).
    assert [decoded(p["image_url"]["url"]) for p in user["content"]] == [
        ("image/png", CAT.data),
        ("image/jpeg", dog.data),
    ]
    assert server.last_chat.image_urls == [p["image_url"]["url"] for p in user["content"]]


async def test_vision_switched_off_in_one_server(server, make_generator, hark_settings_store):
    generator = make_generator()
    generator.bind(hark_settings_store.for_plugin(PLUGIN_ID))
    await hark_settings_store.set_value(PLUGIN_ID, "vision", False, "server", 1)
    prompt = [PromptMessage("user", "what is this?", name="alice", images=(CAT,))]

    await generator.complete(prompt, guild_id=1)
    assert server.last_chat.image_urls == []
    assert server.last_chat.messages[-1]["content"] == (
        "alice: what is this?\n[image not shown: cat.png]"
    )
    await generator.complete(prompt, guild_id=2)
    assert len(server.last_chat.image_urls) == 1


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (404, NO_IMAGES),  # OpenRouter
        (400, "Invalid content type. image_url is only supported by certain models."),  # OpenAI
        (500, "image input is not supported - hint: you may need to provide the mmproj"),
    ],
    ids=["openrouter", "openai", "llama.cpp"],
)
async def test_a_refused_image_is_sent_again_as_a_note(server, make_generator, status, message):
    server.fail_next(status, message=message)
    prompt = [PromptMessage("user", "what is this?", images=(CAT,))]
    generator = make_generator()
    assert await generator.complete(prompt) == server.reply
    refused, again = server.chat_requests
    assert len(refused.image_urls) == 1
    assert again.image_urls == []
    assert again.messages[-1]["content"] == "what is this?\n[image not shown: cat.png]"
    assert generator.lacks("openai/gpt-4o-mini") == {Lack.IMAGES}


async def test_a_model_without_vision_reads_notes_and_is_remembered(server, make_generator, caplog):
    server.supports_vision = False
    prompt = [PromptMessage("user", "what is this?", name="alice", images=(CAT,))]
    generator = make_generator()
    # The first turn: refused once, then answered with the core's note for the image.
    assert await generator.complete(prompt) == server.reply
    refused, again = server.chat_requests
    assert len(refused.image_urls) == 1 and again.image_urls == []
    assert again.messages[-1]["content"] == "alice: what is this?\n[image not shown: cat.png]"
    # The next turn skips the image at once: one request, no failed round trip.
    server.clear()
    assert await generator.complete(prompt) == server.reply
    (request,) = server.chat_requests
    assert request.image_urls == []
    assert "[image not shown: cat.png]" in request.messages[-1]["content"]
    (warning,) = lack_warnings(caplog)  # said once
    assert warning.startswith("model openai/gpt-4o-mini at 127.0.0.1:")
    assert "does not support images" in warning
    assert "`!config llm_openrouter vision off`" in warning
    # Another model at the same endpoint still gets the image.
    server.supports_vision = True
    await generator.complete(prompt, model="anthropic/claude-3.5-haiku")
    assert len(server.last_chat.image_urls) == 1
    # Switched off, the model reads the note without the refused request too.
    server.supports_vision = False
    server.clear()
    assert await make_generator(vision=False).complete(prompt) == server.reply
    assert len(server.chat_requests) == 1


# -- tools: the request ---------------------------------------------------------------


async def test_tools_are_sent_as_functions(server, make_generator):
    await items(make_generator(), tools=[WEATHER, CLOCK])
    assert server.last_chat.body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Get the weather in a city.",
                "parameters": WEATHER.parameters,
            },
        },
        {
            "type": "function",
            "function": {
                "name": "get_time",
                "description": "The time now.",
                "parameters": {"type": "object", "properties": {}},
            },
        },
    ]
    # No tools offered: no `tools` at all (an empty list is refused).
    await items(make_generator())
    assert "tools" not in server.last_chat.body


async def test_tools_switched_off_in_one_server(server, make_generator, hark_settings_store):
    generator = make_generator()
    generator.bind(hark_settings_store.for_plugin(PLUGIN_ID))
    await hark_settings_store.set_value(PLUGIN_ID, "tools", False, "server", 1)
    server.reply = always_calls("get_weather", answer="No tools here.", city="Paris")

    assert "".join(await items(generator, tools=[WEATHER], guild_id=1)) == "No tools here."
    assert "tools" not in server.last_chat.body
    (call,) = await items(generator, tools=[WEATHER], guild_id=2)
    assert isinstance(call, ToolCall) and call.name == "get_weather"
    assert server.last_chat.tool_names == ["get_weather"]


# -- tools: calls read back ----------------------------------------------------------


async def test_streamed_tool_call_pieces_become_one_call(server, make_generator):
    server.reply = ["Let me ", "look. ", tool_call("get_weather", city="Paris, France")]
    server.arguments_chunk_size = 3  # the arguments arrive in many fragments
    got = await items(make_generator(), tools=[WEATHER])
    assert got[:2] == ["Let me ", "look. "]
    (call,) = got[2:]
    assert call.name == "get_weather" and call.id.startswith("call_fake")
    assert json.loads(call.arguments) == {"city": "Paris, France"}


async def test_several_calls_in_one_reply_in_order(server, make_generator):
    server.reply = [
        FakeToolCall("get_weather", {"city": "Paris"}, id="call_a"),
        FakeToolCall("get_time", id="call_b", whole=True),
        FakeToolCall("get_weather", {"city": "Oslo"}, id="call_c"),
    ]
    got = await items(make_generator(), tools=[WEATHER, CLOCK])
    assert got == [
        ToolCall("call_a", "get_weather", '{"city": "Paris"}'),
        ToolCall("call_b", "get_time", "{}"),
        ToolCall("call_c", "get_weather", '{"city": "Oslo"}'),
    ]


async def test_servers_that_number_every_call_zero_or_omit_the_index(server, make_generator):
    """Exact deltas from servers that stray from OpenAI's numbering."""
    server.reply = [
        {"tool_calls": [{"index": 0, "id": "a", "function": {"name": "get_time"}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]},
        # A new id at index 0: another call (Gemini's OpenAI layer numbers all 0).
        {"tool_calls": [{"index": 0, "id": "b", "function": {"name": "get_weather"}}]},
        # No index at all: it continues the latest call.
        {"tool_calls": [{"function": {"arguments": '{"city":'}}]},
        {"tool_calls": [{"function": {"arguments": ' "Rome"}'}}]},
        # The name repeated in every piece (some servers do) is not doubled.
        {"tool_calls": [{"index": 0, "function": {"name": "get_weather", "arguments": ""}}]},
    ]
    got = await items(make_generator(), tools=[WEATHER, CLOCK])
    assert got == [
        ToolCall("a", "get_time", "{}"),
        ToolCall("b", "get_weather", '{"city": "Rome"}'),
    ]


async def test_tool_calls_that_are_not_a_list_are_bad_output(server, make_generator):
    server.reply = [{"tool_calls": "get_weather"}]
    error = await failure(make_generator(), tools=[WEATHER])
    assert isinstance(error, BadOutputError) and "not the API's" in error.message
    assert len(server.chat_requests) == 1


async def test_arguments_sent_as_an_object_are_read_as_json(server, make_generator):
    server.reply = [
        {"tool_calls": [{"index": 0, "id": "x", "function": {"name": "get_weather"}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": {"city": "Lyon"}}}]},
    ]
    (call,) = await items(make_generator(), tools=[WEATHER])
    assert json.loads(call.arguments) == {"city": "Lyon"}


async def test_a_malformed_call_is_passed_on_for_the_core_to_refuse(server, make_generator):
    """No name, broken JSON: yielded as written (the core's run_tool turns each into an
    error result the model reads), and sent back so that the next round is valid."""
    server.reply = [
        {"tool_calls": [{"index": 0, "id": "n", "function": {"arguments": "{}"}}]},
        FakeToolCall("get_weather", '{"city": "Par', id="j"),
    ]
    generator = make_generator()
    nameless, broken = await items(generator, tools=[WEATHER])
    assert nameless == ToolCall("n", "", "{}")
    assert broken == ToolCall("j", "get_weather", '{"city": "Par')

    server.reply = "Sorry, that went wrong."
    followed = [
        *ASK,
        PromptMessage("assistant", "", tool_calls=(nameless, broken)),
        PromptMessage("tool", "error: there is no tool called ''", tool_call_id="n"),
        PromptMessage("tool", "error: the arguments are not valid JSON", tool_call_id="j"),
    ]
    assert await generator.complete(followed) == "Sorry, that went wrong."
    sent = server.last_chat.messages[-3]["tool_calls"]
    assert sent[0]["function"] == {"name": "", "arguments": "{}"}
    # Broken arguments go back wrapped in an object: llama.cpp and vLLM parse the
    # arguments of earlier calls and would refuse the whole request.
    assert json.loads(sent[1]["function"]["arguments"]) == {"invalid_arguments": '{"city": "Par'}


async def test_a_call_is_not_yielded_before_its_reply_finishes(server, make_generator):
    """A stream cut mid-call yields nothing (the arguments may be partial), so the
    core retries it; the retry's whole call is the one yielded."""
    server.reply = [
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "c",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Pa'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": 'ris"}'}}]},
    ]
    server.cut_next(after=2)
    generator = make_generator()
    assert await items(generator, tools=[WEATHER]) == [
        ToolCall("c", "get_weather", '{"city": "Paris"}')
    ]
    assert len(server.chat_requests) == 2 and generator.stats.retries == 1


async def test_a_call_without_tools_offered_is_ignored(server, make_generator):
    server.reply = ["Hello!", tool_call("get_weather", city="Paris")]
    assert await items(make_generator()) == ["Hello!"]
    server.reply = [tool_call("get_weather", city="Paris")]
    error = await failure(make_generator())
    assert isinstance(error, BadOutputError) and "empty reply" in error.message


async def test_unstreamed_replies_with_text_and_calls(server, make_generator):
    server.reply = ["Checking. ", tool_call("get_weather", city="Paris")]
    got = await items(make_generator(stream=False), tools=[WEATHER])
    assert server.last_chat.stream is False
    assert got[0] == "Checking. "
    assert got[1].name == "get_weather" and json.loads(got[1].arguments) == {"city": "Paris"}
    server.reply = [tool_call("get_time")]
    (call,) = await items(make_generator(stream=False), tools=[CLOCK])
    assert call.name == "get_time"


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "unstreamed"])
async def test_results_go_back_in_the_apis_format(server, make_generator, stream):
    server.reply = call_then_answer("get_weather", "It is {results}.", city="Paris")
    generator = make_generator(stream=stream)
    (call,) = await items(generator, tools=[WEATHER])
    followed = [
        *ASK,
        PromptMessage("assistant", "", tool_calls=(call,)),
        PromptMessage("tool", "sunny", name="get_weather", tool_call_id=call.id),
    ]
    assert await items(generator, followed, tools=[WEATHER]) == (
        ["It ", "is ", "sunny."] if stream else ["It is sunny."]
    )
    assistant, result = server.last_chat.messages[-2:]
    assert assistant == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    }
    assert result == {"role": "tool", "tool_call_id": call.id, "content": "sunny"}
    # An assistant's words before its calls are kept.
    said = [*ASK, PromptMessage("assistant", "Looking.", tool_calls=(call,)), followed[-1]]
    await items(generator, said, tools=[WEATHER])
    assert server.last_chat.messages[-2]["content"] == "Looking."


async def test_the_fake_refuses_a_result_without_its_call(server, make_generator):
    """The fake checks what the API checks, so the tests above prove the format."""
    orphan = [*ASK, PromptMessage("tool", "sunny", tool_call_id="nope")]
    error = await failure(make_generator(), orphan, tools=[WEATHER])
    assert isinstance(error, ProviderStatusError) and error.status == 400
    assert "must be a response to a preceeding message with 'tool_calls'" in error.message


# -- models that take no tools --------------------------------------------------------


async def test_a_model_without_tool_use_answers_in_text_and_is_remembered(
    server, make_generator, caplog
):
    server.supports_tools = False
    server.reply = always_calls("get_weather", answer="No tools here.", city="Paris")
    generator = make_generator()
    # The first turn, tools offered: refused once, then answered in text without them.
    assert "".join(await items(generator, tools=[WEATHER])) == "No tools here."
    refused, again = server.chat_requests
    assert refused.tool_names == ["get_weather"]
    assert "tools" not in again.body and again.stream
    assert again.messages == refused.messages
    assert generator.lacks("openai/gpt-4o-mini") == {Lack.TOOLS}
    assert generator.stats.retries == 0  # the core saw no failure
    # The next turn sends one request, without tools.
    server.clear()
    assert "".join(await items(generator, tools=[WEATHER])) == "No tools here."
    (request,) = server.chat_requests
    assert "tools" not in request.body
    (warning,) = lack_warnings(caplog)  # said once
    assert warning.startswith("model openai/gpt-4o-mini at 127.0.0.1:")
    assert "does not support tools; answering without them" in warning
    assert "(`!config llm_openrouter tools off` stops offering them)" in warning
    assert "No endpoints found that support tool use" in warning
    # The memory is per model and endpoint: another model is offered the tools.
    assert generator.lacks("anthropic/claude-3.5-haiku") == set()
    assert generator.lacks("openai/gpt-4o-mini", base_url="http://elsewhere/v1") == set()
    server.supports_tools = True
    (call,) = await items(generator, tools=[WEATHER], model="anthropic/claude-3.5-haiku")
    assert isinstance(call, ToolCall) and server.last_chat.tool_names == ["get_weather"]
    # Switched off, the same model answers without the refused request.
    server.supports_tools = False
    server.clear()
    assert "".join(await items(make_generator(tools=False), tools=[WEATHER])) == "No tools here."
    assert len(server.chat_requests) == 1


@pytest.mark.parametrize(
    ("status", "message", "lack"),
    [
        (400, "registry.ollama.ai/library/gemma:2b does not support tools", Lack.TOOLS),
        (400, "'tools' is not supported with this model.", Lack.TOOLS),
        (400, '"auto" tool choice requires --enable-auto-tool-choice', Lack.TOOLS),
        (400, "tools param requires --jinja flag", Lack.TOOLS),
        (400, "Cannot use tools with stream", Lack.STREAMED_TOOLS),
        (500, "Cannot use tools with stream", Lack.STREAMED_TOOLS),
    ],
    ids=["ollama", "openai", "vllm", "llama.cpp", "llama.cpp-stream", "llama.cpp-stream-500"],
)
async def test_other_servers_refusing_tools(server, make_generator, status, message, lack):
    server.fail_next(status, message=message)
    generator = make_generator()
    assert "".join(await items(generator, tools=[WEATHER])) == server.reply
    refused, again = server.chat_requests
    assert refused.stream and refused.tool_names == ["get_weather"]
    if lack is Lack.TOOLS:
        assert again.stream and "tools" not in again.body
    else:  # the same tools, unstreamed
        assert not again.stream and again.tool_names == ["get_weather"]
    assert generator.lacks("openai/gpt-4o-mini") == {lack}
    assert generator.stats.retries == 0


async def test_a_server_that_cannot_stream_tool_calls_gets_them_unstreamed(
    server, make_generator, caplog
):
    server.streams_tools = False
    server.reply = call_then_answer("get_weather", "It is {results}.", city="Paris")
    generator = make_generator()
    (call,) = await items(generator, tools=[WEATHER])
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    refused, again = server.chat_requests
    assert (refused.stream, again.stream) == (True, False)
    assert again.tool_names == ["get_weather"]
    # The round with the result goes unstreamed at once, and the tool round trip ends.
    server.clear()
    followed = [
        *ASK,
        PromptMessage("assistant", "", tool_calls=(call,)),
        PromptMessage("tool", "sunny", name="get_weather", tool_call_id=call.id),
    ]
    assert await items(generator, followed, tools=[WEATHER]) == ["It is sunny."]
    (request,) = server.chat_requests
    assert not request.stream and request.tool_names == ["get_weather"]
    # Without tools the reply streams as before.
    server.reply = "Streamed again."
    assert await items(generator) == ["Streamed ", "again."]
    assert server.last_chat.stream
    (warning,) = lack_warnings(caplog)
    assert "cannot stream tool calls; asking for whole replies when tools are offered" in warning
    assert "`!config llm_openrouter stream off`" in warning


async def test_a_model_with_neither_tools_nor_vision(server, make_generator, caplog):
    """Each refusal is dropped in turn, in one call: tools, then the image."""
    server.supports_tools = False
    server.supports_vision = False
    prompt = [PromptMessage("user", "what is this?", images=(CAT,))]
    generator = make_generator()
    assert "".join(await items(generator, prompt, tools=[WEATHER])) == server.reply
    first, second, third = server.chat_requests
    assert first.tools and first.image_urls
    assert not second.tools and second.image_urls
    assert not third.tools and not third.image_urls
    assert generator.lacks("openai/gpt-4o-mini") == {Lack.TOOLS, Lack.IMAGES}
    server.clear()
    await items(generator, prompt, tools=[WEATHER])
    (request,) = server.chat_requests
    assert not request.tools and not request.image_urls
    assert len(lack_warnings(caplog)) == 2


async def test_a_tool_named_after_images_is_not_a_vision_refusal(server, make_generator):
    server.supports_tools = False
    spec = ToolSpec("image-search", "Find images.", {"type": "object", "properties": {}})
    prompt = [PromptMessage("user", "find a cat like this", images=(CAT,))]
    generator = make_generator()
    assert "".join(await items(generator, prompt, tools=[spec])) == server.reply
    refused, again = server.chat_requests
    assert refused.tool_names == ["image-search"]
    assert "tools" not in again.body and len(again.image_urls) == 1  # the image stays
    assert generator.lacks("openai/gpt-4o-mini") == {Lack.TOOLS}


async def test_a_refusal_after_text_was_posted_is_the_notice(server, make_generator):
    """OpenRouter's mid-stream error chunk, when the provider it routed to refuses the
    tools after the stream began: too late to ask again once text was yielded."""
    message = NO_TOOLS.format(name="get_weather")
    server.error_next(after=2, code=404, message=message)
    generator = make_generator()
    got, error = await until_failure(generator, tools=[WEATHER])
    assert got == ["Hello! ", "I "]
    assert isinstance(error, ConfigurationError), error
    assert "does not take tool calls" in error.message
    assert "`!config llm_openrouter tools off`" in error.message
    assert error.user_message.startswith("Sorry, the model `openai/gpt-4o-mini` at ")
    assert len(server.chat_requests) == 1
    # Remembered all the same: the next turn goes without tools at once.
    server.clear()
    assert "".join(await items(generator, tools=[WEATHER])) == server.reply
    (request,) = server.chat_requests
    assert "tools" not in request.body


async def test_a_refusal_in_the_stream_before_any_text_is_asked_again(server, make_generator):
    server.error_next(after=0, code=404, message=NO_TOOLS.format(name="get_weather"))
    generator = make_generator()
    assert "".join(await items(generator, tools=[WEATHER])) == server.reply
    refused, again = server.chat_requests
    assert refused.tools and "tools" not in again.body
    assert generator.lacks("openai/gpt-4o-mini") == {Lack.TOOLS}
    # An upstream failure (OpenRouter's 502) mentioning tools is not a refusal: the
    # core retries it with the same tools.
    server.clear()
    server.error_next(after=0, code=502, message="tool support is not available right now")
    fresh = make_generator()
    assert "".join(await items(fresh, tools=[WEATHER])) == server.reply
    assert [r.tool_names for r in server.chat_requests] == [["get_weather"], ["get_weather"]]
    assert fresh.lacks("openai/gpt-4o-mini") == set() and fresh.stats.retries == 1


async def test_the_memory_is_bounded(server, make_generator, monkeypatch):
    monkeypatch.setattr(generator_module, "MAX_REMEMBERED", 2)
    server.supports_tools = False
    generator = make_generator()
    models = list(server.models[:3])
    for model in models:
        await items(generator, tools=[WEATHER], model=model)
    assert [generator.lacks(m) for m in models] == [set(), {Lack.TOOLS}, {Lack.TOOLS}]
    # The forgotten model is found out again, with one refused request.
    server.clear()
    await items(generator, tools=[WEATHER], model=models[0])
    assert len(server.chat_requests) == 2
    assert generator.lacks(models[0]) == {Lack.TOOLS}
    assert generator.lacks(models[1]) == set()


async def test_other_errors_are_not_read_as_refusals(server, make_generator):
    # Tool words, but no tools in the request: the usual reading.
    server.fail_next(400, message="this model does not support tools")
    error = await failure(make_generator())
    assert isinstance(error, ProviderStatusError) and error.status == 400
    # Tools sent, but the server's words are about something else.
    server.fail_next(400, message="max_tokens is too large for this model")
    error = await failure(make_generator(), tools=[WEATHER])
    assert isinstance(error, ProviderStatusError) and error.status == 400
    # OpenRouter's words about images, for a request without any: the 404's usual
    # reading (the model is missing).
    server.fail_next(404, message=NO_IMAGES)
    error = await failure(make_generator(), tools=[WEATHER])
    assert isinstance(error, ConfigurationError) and "was not found" in error.message
    # An unknown model stays an unknown model, tools or not.
    error = await failure(make_generator(model="nobody/nothing"), tools=[WEATHER])
    assert isinstance(error, ConfigurationError) and "was not found" in error.message
    # A 503 mentioning tools is still retried.
    server.fail_next(503, message="tool servers overloaded, support is notified")
    assert await make_generator().complete(ASK) == server.reply


# -- unstreamed replies' own failures --------------------------------------------------


async def test_unstreamed_bad_answers(server, make_generator):
    generator = make_generator(stream=False)
    server.bad_body_next("html")
    error = await failure(generator)
    assert isinstance(error, BadOutputError) and "not a chat completion" in error.message
    server.reply = ""
    error = await failure(generator)
    assert isinstance(error, BadOutputError) and "empty reply" in error.message
    server.reply = "fine"
    server.fail_next(503)
    assert await generator.complete(ASK) == "fine"  # retried as streamed calls are
