"""The loopback server speaks OpenAI's documented wire format (checked with raw HTTP)."""

from __future__ import annotations

import json

import aiohttp
import pytest
from fake_openai_chat import FakeOpenAIServer
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
