"""The loopback server speaks OpenAI's documented wire format (checked with raw HTTP),
tool calls and image parts included, and refuses what the API refuses."""

from __future__ import annotations

import json

import aiohttp
import pytest
from fake_openai_chat import (
    FakeOpenAIServer,
    FakeToolCall,
    always_calls,
    call_then_answer,
    tool_call,
    tool_results,
)
from openrouter_support import KEY

AUTH = {"Authorization": f"Bearer {KEY}"}
BODY = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


async def post(server, body, headers=AUTH):
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{server.base_url}/chat/completions", json=body, headers=headers) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.text()


def events(text: str) -> list[str]:
    """The ``data:`` payloads of an SSE body, checking its framing on the way."""
    assert text.endswith("\n\n"), "every event ends with a blank line"
    payloads = []
    for block in text.strip("\n").split("\n\n"):
        if block.startswith(":"):
            continue  # a comment (keep-alive)
        assert block.startswith("data: ") and "\n" not in block, block
        payloads.append(block[len("data: ") :])
    return payloads


async def test_streaming_format(server):
    server.reply = ["Hello", " world"]
    status, headers, text = await post(server, {**BODY, "stream": True})
    assert status == 200
    assert headers["Content-Type"].startswith("text/event-stream")
    data = events(text)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert all(c["model"] == "openai/gpt-4o-mini" for c in chunks)
    first, *middle, last = chunks
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["delta"]["content"] for c in middle] == ["Hello", " world"]
    assert all(c["choices"][0]["finish_reason"] is None for c in [first, *middle])
    assert last["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }


async def test_usage_chunk_when_asked(server):
    body = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
    _, _, text = await post(server, body)
    usage = json.loads(events(text)[-2])
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] > 0


async def test_non_streaming_format(server):
    server.reply = "Just this."
    status, _, text = await post(server, BODY)
    completion = json.loads(text)
    assert status == 200 and completion["object"] == "chat.completion"
    choice = completion["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "Just this."
    assert choice["finish_reason"] == "stop"


async def test_reply_function_sees_the_request(server):
    server.reply = lambda request: f"you said {request.messages[-1]['content']}"
    _, _, text = await post(server, BODY)
    assert json.loads(text)["choices"][0]["message"]["content"] == "you said hi"


async def test_async_reply_function_and_chunk_size(server):
    async def reply(request):
        return "abcdefg"

    server.reply, server.chunk_size = reply, 3
    _, _, text = await post(server, {**BODY, "stream": True})
    contents = [json.loads(d)["choices"][0]["delta"].get("content") for d in events(text)[1:-2]]
    assert contents == ["abc", "def", "g"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}])
async def test_bearer_key_is_checked(server, headers):
    status, _, text = await post(server, BODY, headers=headers)
    assert status == 401
    error = json.loads(text)["error"]
    assert error["code"] == "invalid_api_key" and error["type"] == "invalid_request_error"
    assert error["message"]


async def test_no_key_configured_accepts_anything():
    async with FakeOpenAIServer() as server:
        status, _, _ = await post(server, BODY, headers={})
    assert status == 200


async def test_injected_failures_then_recovery(server):
    server.fail_next(429, times=2, retry_after=3)
    for _ in range(2):
        status, headers, text = await post(server, BODY)
        assert status == 429 and headers["Retry-After"] == "3"
        assert json.loads(text)["error"]["code"] == "rate_limit_exceeded"
    status, _, _ = await post(server, BODY)
    assert status == 200


async def test_unknown_model_is_404(server):
    status, _, text = await post(server, {**BODY, "model": "no/such"})
    assert status == 404
    assert json.loads(text)["error"]["code"] == "model_not_found"


async def test_bad_requests_are_400(server):
    status, _, _ = await post(server, {"model": "openai/gpt-4o-mini", "messages": []})
    assert status == 400
    status, _, _ = await post(server, {"messages": BODY["messages"]})
    assert status == 400


async def test_cut_stream_has_no_finish_and_no_done(server):
    server.reply = ["a ", "b ", "c"]
    server.cut_next(after=2)
    _, _, text = await post(server, {**BODY, "stream": True})
    data = events(text)
    assert "[DONE]" not in data
    chunks = [json.loads(d) for d in data]
    assert [c["choices"][0]["delta"].get("content") for c in chunks] == ["", "a ", "b "]
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks)


async def test_openrouter_error_chunk(server):
    server.error_next(after=1, code=502, message="upstream died")
    _, _, text = await post(server, {**BODY, "stream": True})
    last = json.loads(events(text)[-1])
    assert last["error"] == {"code": 502, "message": "upstream died"}
    assert last["choices"][0]["finish_reason"] == "error"
    assert last["object"] == "chat.completion.chunk"


async def test_models_and_recorded_requests(server):
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{server.base_url}/models", headers={**AUTH, "X-Title": "T"}) as resp,
    ):
        listing = await resp.json()
    assert listing["object"] == "list"
    assert [m["id"] for m in listing["data"]] == server.models
    (request,) = server.requests
    assert (request.method, request.path, request.headers["x-title"]) == ("GET", "/v1/models", "T")
    assert request.bearer == KEY
    await post(server, BODY)
    assert server.last_chat.model == "openai/gpt-4o-mini" and server.last_chat.stream is False
    server.clear()
    assert server.requests == []


# -- tool calls and images -------------------------------------------------------------

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
PNG_URL = "data:image/png;base64,iVBORw0KGgo="


async def test_a_streamed_tool_call_is_sent_as_openai_sends_it(server):
    server.reply = ["Let me check.", tool_call("get_weather", city="Paris")]
    server.arguments_chunk_size = 7
    _, _, text = await post(server, {**BODY, "tools": TOOLS, "stream": True})
    data = events(text)
    assert data[-1] == "[DONE]"
    deltas = [json.loads(d)["choices"][0]["delta"] for d in data[:-1]]
    finishes = [json.loads(d)["choices"][0]["finish_reason"] for d in data[:-1]]
    assert deltas[:2] == [{"role": "assistant", "content": ""}, {"content": "Let me check."}]
    first, *fragments = [d["tool_calls"] for d in deltas[2:-1]]
    (opening,) = first
    assert opening["index"] == 0 and opening["id"].startswith("call_")
    assert opening["type"] == "function"
    assert opening["function"] == {"name": "get_weather", "arguments": ""}
    assert all(set(f[0]) == {"index", "function"} for f in fragments)
    assert all(set(f[0]["function"]) == {"arguments"} for f in fragments)
    arguments = "".join(f[0]["function"]["arguments"] for f in fragments)
    assert len(fragments) == 3 and json.loads(arguments) == {"city": "Paris"}
    assert deltas[-1] == {} and finishes[-1] == "tool_calls"
    assert set(finishes[:-1]) == {None}


async def test_whole_calls_and_their_indexes(server):
    server.reply = [
        FakeToolCall("get_weather", {"city": "Oslo"}, id="call_1", whole=True),
        FakeToolCall("get_weather", '{"city": "Rome"}', id="call_2", whole=True),
    ]
    _, _, text = await post(server, {**BODY, "tools": TOOLS, "stream": True})
    calls = [json.loads(d)["choices"][0]["delta"].get("tool_calls") for d in events(text)[:-1]]
    assert calls[1:3] == [
        [
            {
                "index": 0,
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
            }
        ],
        [
            {
                "index": 1,
                "id": "call_2",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
            }
        ],
    ]


async def test_an_unstreamed_tool_call(server):
    server.reply = [tool_call("get_weather", city="Paris")]
    status, _, text = await post(server, {**BODY, "tools": TOOLS})
    choice = json.loads(text)["choices"][0]
    assert status == 200 and choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["content"] is None and message["role"] == "assistant"
    (call,) = message["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}


async def test_the_recorded_request_shows_tools_images_and_results(server):
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": PNG_URL}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    status, _, _ = await post(server, {**BODY, "messages": messages, "tools": TOOLS})
    assert status == 200
    request = server.last_chat
    assert request.tool_names == ["get_weather"] and request.tools == TOOLS
    assert request.image_urls == [PNG_URL]
    assert tool_results(request) == ["sunny"]


def call_message(ident: str = "c1") -> dict:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": ident, "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
    }


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"tools": []}, "too short"),
        ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "name"),
        ({"tools": [{"function": {"name": "f"}}]}, "'type': 'function'"),
        (
            {"messages": [{"role": "tool", "tool_call_id": "c1", "content": "x"}]},
            "must be a response to a preceeding message with 'tool_calls'",
        ),
        (
            {"messages": [call_message(), {"role": "user", "content": "hi"}]},
            "did not have response messages: c1",
        ),
        ({"messages": [call_message()]}, "without response messages: c1"),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "content": "x",
                        "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": {}}}],
                    }
                ]
            },
            "a name and arguments (a string)",
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "content": [{"type": "image_url", "image_url": {"url": PNG_URL}}],
                    }
                ]
            },
            "Image URLs are only allowed for messages with role 'user'",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "cat.png"}}],
                    }
                ]
            },
            "Invalid image URL",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@"}}
                        ],
                    }
                ]
            },
            "Invalid base64",
        ),
        ({"messages": [{"role": "user", "content": [{"type": "audio"}]}]}, "content part"),
    ],
    ids=[
        "empty-tools",
        "tool-name",
        "tool-type",
        "orphan-result",
        "unanswered-call",
        "unanswered-last-call",
        "call-shape",
        "assistant-image",
        "image-url",
        "image-base64",
        "part-type",
    ],
)
async def test_requests_the_api_refuses_are_400(server, changes, says):
    status, _, text = await post(server, {**BODY, **changes})
    assert status == 400, text
    assert says in json.loads(text)["error"]["message"]


async def test_a_model_without_tools_or_vision_answers_as_openrouter_does(server):
    server.supports_tools = False
    status, _, text = await post(server, {**BODY, "tools": TOOLS})
    assert status == 404
    assert json.loads(text)["error"]["message"].startswith(
        'No endpoints found that support tool use. Try disabling "get_weather".'
    )
    status, _, _ = await post(server, BODY)  # no tools: answered
    assert status == 200
    server.supports_vision = False
    image = [{"type": "image_url", "image_url": {"url": PNG_URL}}]
    status, _, text = await post(server, {**BODY, "messages": [{"role": "user", "content": image}]})
    assert status == 404
    assert json.loads(text)["error"]["message"] == "No endpoints found that support image input"


async def test_a_server_that_cannot_stream_tool_calls_answers_as_llama_cpp_does(server):
    server.streams_tools = False
    status, _, text = await post(server, {**BODY, "tools": TOOLS, "stream": True})
    assert status == 500
    assert json.loads(text)["error"]["message"] == "Cannot use tools with stream"
    status, _, _ = await post(server, {**BODY, "tools": TOOLS})  # unstreamed: answered
    assert status == 200
    status, _, _ = await post(server, {**BODY, "stream": True})  # no tools: streamed
    assert status == 200


async def test_scripted_models_that_call_tools(server):
    server.reply = always_calls("get_weather", answer="Done.", city="Oslo")
    _, _, text = await post(server, {**BODY, "tools": TOOLS})
    assert json.loads(text)["choices"][0]["message"]["tool_calls"]
    _, _, text = await post(server, BODY)  # no tools offered: it answers
    assert json.loads(text)["choices"][0]["message"]["content"] == "Done."

    server.reply = call_then_answer("get_weather", "Got {results}.")
    _, _, text = await post(server, {**BODY, "tools": TOOLS})
    (call,) = json.loads(text)["choices"][0]["message"]["tool_calls"]
    answered = [
        *BODY["messages"],
        {**call_message(call["id"])},
        {"role": "tool", "tool_call_id": call["id"], "content": "rain"},
    ]
    _, _, text = await post(server, {**BODY, "messages": answered, "tools": TOOLS})
    assert json.loads(text)["choices"][0]["message"]["content"] == "Got rain."
