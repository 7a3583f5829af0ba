"""A loopback OpenAI-compatible server for tests (no internet, no API account).

:class:`FakeOpenAIServer` speaks the documented wire format of the chat
completions API closely enough for the real ``openai`` client (and this plugin)
to talk to it: ``POST /v1/chat/completions`` streamed as server-sent events
(``data: {chat.completion.chunk}`` lines: a first chunk carrying the role,
content deltas, a final chunk with ``finish_reason``, then ``data: [DONE]``) or
as one JSON object, and ``GET /v1/models``. Errors use OpenAI's JSON shape
(``{"error": {"message", "type", "param", "code"}}``).

It is scriptable (reply text or a function of the request, chunking, delays;
tool calls, streamed in pieces as OpenAI sends them or whole; a model that takes
no tools or images) and can inject failures: an HTTP status for the next N
requests (with ``Retry-After``), 404 for unknown models, a stream cut off
without ``[DONE]``, a dropped connection, OpenRouter's mid-stream error chunk,
and a 200 whose body is not a stream (an HTML page, a JSON document, unparsable
events). Requests are
checked as the API checks them (content parts, images only from the user, tool
calls answered by tool messages, the ``tools`` list) and refused with its 400s.
Every request is recorded with its headers and JSON body::

    async with FakeOpenAIServer(reply="Hi there!", api_key="sk-test") as server:
        generator = OpenRouterGenerator(base_url=server.base_url, api_key="sk-test")
        ...
        assert server.last_chat.headers["X-Title"] == "Hark"

Other packages' end-to-end tests import it from here.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import inspect
import itertools
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from multidict import CIMultiDict

from hark.testing.loopback import FailureQueue, LoopbackServer

__all__ = [
    "BAD_BODIES",
    "DEFAULT_MODELS",
    "DEFAULT_REPLY",
    "NO_IMAGES",
    "NO_STREAMED_TOOLS",
    "NO_TOOLS",
    "FakeOpenAIServer",
    "FakeToolCall",
    "RecordedRequest",
    "always_calls",
    "call_then_answer",
    "tool_call",
    "tool_results",
]

DEFAULT_REPLY = "Hello! I am a fake model, answering from the loopback server."
DEFAULT_MODELS: tuple[str, ...] = (
    "openai/gpt-4o-mini",
    "anthropic/claude-3.5-haiku",
    "meta-llama/llama-3.1-8b-instruct",
    "mistralai/mistral-small",
)

CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"

# OpenRouter's answers (HTTP 404) when no provider of the model takes tools or images.
NO_TOOLS = (
    'No endpoints found that support tool use. Try disabling "{name}". To learn more'
    " about provider routing, visit: https://openrouter.ai/docs/provider-routing"
)
NO_IMAGES = "No endpoints found that support image input"
# llama.cpp's answer (HTTP 500) to a streamed request with tools, in builds that run
# tools only unstreamed (before mid-2025).
NO_STREAMED_TOOLS = "Cannot use tools with stream"
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@dataclass(frozen=True, slots=True)
class FakeToolCall:
    """A tool call in a scripted reply (an item of ``reply`` next to text pieces).

    ``arguments``: a mapping (sent as its JSON) or the exact text, which may be
    broken JSON. ``id``: None gives ``call_fake<n>``. Streamed, the call goes as
    OpenAI sends it: a first delta with ``index``, ``id``, ``type`` and the name
    with ``"arguments": ""``, then the arguments in fragments of the server's
    ``arguments_chunk_size``; ``whole=True`` sends it in one delta instead (as
    Mistral and Ollama's ``/v1`` do). A reply with a call finishes ``tool_calls``.
    """

    name: str
    arguments: str | Mapping[str, Any] = "{}"
    id: str | None = None
    whole: bool = False

    @property
    def arguments_text(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(dict(self.arguments))


def tool_call(name: str, /, **arguments: Any) -> FakeToolCall:
    """``tool_call("get_weather", city="Paris")``: a call with these arguments."""
    return FakeToolCall(name, arguments)


def tool_results(request: RecordedRequest) -> list[str]:
    """The contents of the request's ``tool`` messages (results of earlier calls)."""
    return [str(m.get("content")) for m in request.messages if m.get("role") == "tool"]


def call_then_answer(
    name: str, /, answer: str = "The tool said: {results}", **arguments: Any
) -> ReplyFunc:
    """A model that calls ``name`` while the request has no tool result yet, then
    answers ``answer`` (``{results}``: the results, joined by `` | ``)."""

    def reply(request: RecordedRequest) -> ReplyItems:
        results = tool_results(request)
        if results:
            return answer.replace("{results}", " | ".join(results))
        return [tool_call(name, **arguments)]

    return reply


def always_calls(name: str, /, answer: str = "Done.", **arguments: Any) -> ReplyFunc:
    """A model that calls ``name`` whenever it is offered tools (for round limits),
    and answers ``answer`` when it is not."""

    def reply(request: RecordedRequest) -> ReplyItems:
        return [tool_call(name, **arguments)] if request.tools else answer

    return reply


@dataclass(slots=True)
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    headers: CIMultiDict[str]
    body: Any = None
    received_at: float = field(default_factory=time.monotonic)

    @property
    def model(self) -> str | None:
        return self.body.get("model") if isinstance(self.body, dict) else None

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", [])) if isinstance(self.body, dict) else []

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream")) if isinstance(self.body, dict) else False

    @property
    def tools(self) -> list[dict[str, Any]]:
        """The ``tools`` parameter as sent ([] when none)."""
        tools = self.body.get("tools") if isinstance(self.body, dict) else None
        return list(tools) if isinstance(tools, list) else []

    @property
    def tool_names(self) -> list[str]:
        return [t.get("function", {}).get("name") for t in self.tools if isinstance(t, dict)]

    @property
    def image_urls(self) -> list[str]:
        """The ``image_url`` URLs of every message's content parts, in order."""
        urls = []
        for message in self.messages:
            content = message.get("content") if isinstance(message, dict) else None
            for part in content if isinstance(content, list) else []:
                if isinstance(part, dict) and part.get("type") == "image_url":
                    urls.append(part.get("image_url", {}).get("url"))
        return urls

    @property
    def bearer(self) -> str | None:
        """The bearer token sent in ``Authorization`` (tests compare it; never print it)."""
        value = self.headers.get("Authorization", "")
        return value[7:] if value.startswith("Bearer ") else None


#: A scripted reply: text, or the exact pieces (text deltas, :class:`FakeToolCall`
#: items, and dicts sent as a chunk's ``delta`` verbatim).
ReplyItems = str | Sequence[str | FakeToolCall | dict[str, Any]]
ReplyFunc = Callable[[RecordedRequest], "ReplyItems | Awaitable[ReplyItems]"]

BadBody = Literal[
    "html", "json", "sse_not_json", "sse_not_chunks", "sse_bad_choices", "sse_keepalive_only"
]
#: 200 answers that are not what the API promises, for :meth:`FakeOpenAIServer.bad_body_next`:
#: (Content-Type, body).
BAD_BODIES: dict[str, tuple[str, bytes]] = {
    # A proxy's or captive portal's page.
    "html": (
        "text/html; charset=utf-8",
        b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head>\n"
        b'<body><p>Please <a href="http://portal.example/login">sign in</a>.</p></body>\n'
        b"</html>\n",
    ),
    # A whole completion, as a server that ignores ``stream`` sends it.
    "json": (
        "application/json",
        b'{"id": "chatcmpl-fake", "object": "chat.completion", "created": 1700000000,'
        b' "model": "fake", "choices": [{"index": 0, "message": {"role": "assistant",'
        b' "content": "not a stream"}, "finish_reason": "stop"}]}',
    ),
    "sse_not_json": ("text/event-stream", b"data: this is not JSON\n\n"),
    "sse_not_chunks": (
        "text/event-stream",
        b'data: {"object": "not.a.chunk"}\n\ndata: {"object": "not.a.chunk"}\n\ndata: [DONE]\n\n',
    ),
    "sse_bad_choices": ("text/event-stream", b'data: {"choices": "none"}\n\ndata: [DONE]\n\n'),
    # Not bad output but a stream that broke off: OpenRouter's keep-alive comment, then
    # the end, before any event.
    "sse_keepalive_only": ("text/event-stream", b": OPENROUTER PROCESSING\n\n"),
}


@dataclass(slots=True)
class _StreamFault:
    kind: Literal["cut", "reset", "error"]
    after: int
    code: int | str = 502
    message: str = ""
    style: Literal["openrouter", "openai"] = "openrouter"


_STATUS_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    402: ("insufficient_quota", "insufficient_quota"),
    403: ("invalid_request_error", "permission_denied"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


def error_body(status: int, message: str, *, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error object for ``status``."""
    kind, code = _STATUS_TYPES.get(status, ("server_error" if status >= 500 else "api_error", None))
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def split_words(text: str) -> list[str]:
    """Token-like pieces: each word with the whitespace after it."""
    return re.findall(r"\s*\S+\s*|\s+", text) if text else []


class FakeOpenAIServer(LoopbackServer):
    """An OpenAI-compatible chat completions server on 127.0.0.1 (a random port).

    ``reply``: the answer, or a function of the :class:`RecordedRequest` returning the
    answer (sync or async); a list of strings gives the exact chunks.
    ``api_key``: when set, requests must carry ``Authorization: Bearer <api_key>``.
    ``models``: what ``GET /v1/models`` lists; other models get 404 unless
    ``accept_any_model``. ``chunk_size``: characters per delta (default: one word per
    delta). ``delay``: seconds before answering; ``chunk_delay``: between deltas.
    ``keepalive``: send OpenRouter's ``: OPENROUTER PROCESSING`` comment first.
    ``supports_tools`` / ``supports_vision``: False answers a request with tools /
    with an image as OpenRouter does for a model without them (404, "No endpoints
    found that support tool use" / "... image input"). ``streams_tools=False``
    answers a streamed request with tools as older llama.cpp builds do (500, "Cannot
    use tools with stream"); unstreamed, the tools work. ``arguments_chunk_size``:
    characters per streamed fragment of a tool call's arguments.
    """

    def __init__(
        self,
        *,
        reply: ReplyItems | ReplyFunc = DEFAULT_REPLY,
        api_key: str | None = None,
        models: Sequence[str] = DEFAULT_MODELS,
        accept_any_model: bool = False,
        chunk_size: int | None = None,
        delay: float = 0.0,
        chunk_delay: float = 0.0,
        keepalive: bool = False,
        supports_tools: bool = True,
        supports_vision: bool = True,
        streams_tools: bool = True,
        arguments_chunk_size: int = 6,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(host=host)
        self.reply = reply
        self.api_key = api_key
        self.models = list(models)
        self.accept_any_model = accept_any_model
        self.chunk_size = chunk_size
        self.delay = delay
        self.chunk_delay = chunk_delay
        self.keepalive = keepalive
        self.supports_tools = supports_tools
        self.supports_vision = supports_vision
        self.streams_tools = streams_tools
        self.arguments_chunk_size = arguments_chunk_size
        self.requests: list[RecordedRequest] = []
        self._failures = FailureQueue()
        self._faults: list[_StreamFault] = []
        self._ids = itertools.count(1)

    # -- lifecycle (start, close, ``async with``, ``url``: LoopbackServer) --

    def routes(self, app: web.Application) -> None:
        app.router.add_post(CHAT_PATH, self._chat)
        app.router.add_get(MODELS_PATH, self._models)

    @property
    def base_url(self) -> str:
        """The API base URL to give a client: ``http://127.0.0.1:PORT/v1``."""
        return f"{self.url}/v1"

    # -- what arrived ------------------------------------------------------

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == CHAT_PATH]

    @property
    def last_chat(self) -> RecordedRequest:
        return self._last(self.chat_requests, "chat completion request")

    # -- scripted failures -------------------------------------------------

    def fail_next(
        self,
        status: int = 503,
        *,
        times: int = 1,
        retry_after: float | str | None = None,
        message: str | None = None,
        endpoint: Literal["chat", "models", "any"] = "chat",
    ) -> None:
        """Answer the next ``times`` matching requests with HTTP ``status`` (an OpenAI error)."""
        keys = None if endpoint == "any" else [endpoint]
        self._failures.add(status, times=times, keys=keys, retry_after=retry_after, message=message)

    def bad_body_next(
        self,
        kind: BadBody = "html",
        *,
        times: int = 1,
        endpoint: Literal["chat", "models", "any"] = "chat",
    ) -> None:
        """Answer the next ``times`` matching requests 200 with a body that is not what the
        API promises (see :data:`BAD_BODIES`): ``html`` (a captive portal's page), ``json``
        (a whole completion, not a stream), ``sse_not_json`` (an event whose data is not
        JSON), ``sse_not_chunks`` (JSON events that are not chunks), ``sse_bad_choices``
        (a chunk whose ``choices`` is not a list), ``sse_keepalive_only`` (a comment, then
        the end: a stream that broke off before its first event). Queued in order with
        :meth:`fail_next`'s failures."""
        if kind not in BAD_BODIES:
            raise ValueError(f"unknown bad body {kind!r}; one of {sorted(BAD_BODIES)}")
        keys = None if endpoint == "any" else [endpoint]
        self._failures.add(200, times=times, keys=keys, body=kind)

    def cut_next(self, *, after: int = 2, times: int = 1, reset: bool = False) -> None:
        """Stop the next streamed reply(s) after ``after`` deltas without a finish or ``[DONE]``.

        ``reset=False`` ends the response body cleanly there (as a proxy that gave up
        would); ``reset=True`` drops the connection mid-body.
        """
        kind: Literal["cut", "reset"] = "reset" if reset else "cut"
        self._faults.extend(_StreamFault(kind, after) for _ in range(times))

    def error_next(
        self,
        *,
        after: int = 2,
        code: int | str = 502,
        message: str = "Provider returned error",
        style: Literal["openrouter", "openai"] = "openrouter",
        times: int = 1,
    ) -> None:
        """Send an error event inside the next streamed reply(s), after ``after`` deltas.

        ``style="openrouter"``: OpenRouter's chunk with a top-level ``error`` object and
        ``finish_reason: "error"``; ``style="openai"``: a bare ``data: {"error": {...}}``.
        """
        self._faults.extend(
            _StreamFault("error", after, code, message, style) for _ in range(times)
        )

    def clear(self) -> None:
        """Forget recorded requests and pending failures."""
        self.requests.clear()
        self._failures.clear()
        self._faults.clear()

    # -- handlers ----------------------------------------------------------

    async def _record(self, request: web.Request) -> RecordedRequest | web.Response:
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            try:
                body = json.loads(raw)
            except ValueError:
                record = RecordedRequest(request.method, request.path, CIMultiDict(request.headers))
                self.requests.append(record)
                return self._error(400, "We could not parse the JSON body of your request.")
        record = RecordedRequest(request.method, request.path, CIMultiDict(request.headers), body)
        self.requests.append(record)
        return record

    def _error(
        self, status: int, message: str, *, retry_after: float | str | None = None, **kw: Any
    ) -> web.Response:
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        return web.json_response(error_body(status, message, **kw), status=status, headers=headers)

    def _check(self, record: RecordedRequest, endpoint: str) -> web.Response | None:
        """Auth, then scripted failures: the response to send instead, if any."""
        if self.api_key is not None and record.bearer != self.api_key:
            return self._error(
                401, "Incorrect API key provided. You can find your API key in your account."
            )
        failure = self._failures.take(endpoint)
        if failure is not None and "body" in failure.details:
            content_type, body = BAD_BODIES[failure.details["body"]]
            return web.Response(body=body, headers={"Content-Type": content_type})
        if failure is not None:
            message = failure.message or f"Injected failure (HTTP {failure.status})."
            return self._error(failure.status, message, retry_after=failure.retry_after)
        return None

    async def _models(self, request: web.Request) -> web.StreamResponse:
        record = await self._record(request)
        if isinstance(record, web.Response):
            return record
        refusal = self._check(record, "models")
        if refusal is not None:
            return refusal
        data = [
            {"id": m, "object": "model", "created": 1700000000, "owned_by": m.split("/")[0]}
            for m in self.models
        ]
        return web.json_response({"object": "list", "data": data})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        record = await self._record(request)
        if isinstance(record, web.Response):
            return record
        refusal = self._check(record, "chat")
        if refusal is not None:
            return refusal
        body = record.body
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return self._error(400, "you must provide a model parameter", param="model")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return self._error(400, "'messages' must be a non-empty array", param="messages")
        for message in messages:
            if not isinstance(message, dict) or message.get("role") not in (
                "system",
                "user",
                "assistant",
                "developer",
                "tool",
            ):
                return self._error(400, "each message needs a valid role", param="messages")
        invalid = self._invalid(body)
        if invalid is not None:
            return self._error(400, invalid[1], param=invalid[0])
        model = body["model"]
        if not self.accept_any_model and model not in self.models:
            return self._error(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                param="model",
            )
        if record.tools and not self.supports_tools:
            return self._error(404, NO_TOOLS.format(name=record.tool_names[0]))
        if record.image_urls and not self.supports_vision:
            return self._error(404, NO_IMAGES)
        if record.tools and record.stream and not self.streams_tools:
            return self._error(500, NO_STREAMED_TOOLS)
        if self.delay:
            await asyncio.sleep(self.delay)
        pieces = await self._pieces(record)
        calls = any(
            isinstance(p, FakeToolCall) or (isinstance(p, dict) and "tool_calls" in p)
            for p in pieces
        )
        finish = "tool_calls" if calls else "stop"
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        if isinstance(max_tokens, int) and 0 < max_tokens < len(pieces):
            pieces, finish = pieces[:max_tokens], "length"
        if body.get("stream"):
            return await self._stream(request, record, pieces, finish)
        text = "".join(p for p in pieces if isinstance(p, str))
        tool_calls = [self._whole_call(p) for p in pieces if isinstance(p, FakeToolCall)]
        return web.json_response(
            self._completion(model, text, finish, len(pieces), tool_calls=tool_calls)
        )

    def _invalid(self, body: dict[str, Any]) -> tuple[str, str] | None:
        """(param, message) of the first thing OpenAI would refuse with a 400, if any."""
        tools = body.get("tools")
        if tools is not None:
            if not isinstance(tools, list) or not tools:
                return "tools", f"{tools!r} is too short - 'tools'"
            for tool in tools:
                tool = tool if isinstance(tool, dict) else {}
                function = tool.get("function")
                if tool.get("type") != "function" or not isinstance(function, dict):
                    return "tools", "each tool must be {'type': 'function', 'function': {...}}"
                if not TOOL_NAME.match(str(function.get("name", ""))):
                    return "tools", f"Invalid 'tools.function.name': {function.get('name')!r}"
                if not isinstance(function.get("parameters", {}), dict):
                    return "tools", "'tools.function.parameters' must be an object"
        open_calls: list[str] = []  # ids of calls not answered yet
        for message in body["messages"]:
            role, content = message["role"], message.get("content")
            if open_calls and role != "tool":
                return "messages", (
                    "An assistant message with 'tool_calls' must be followed by tool messages"
                    " responding to each 'tool_call_id'. The following tool_call_ids did not"
                    f" have response messages: {', '.join(open_calls)}"
                )
            if role == "tool":
                ident = message.get("tool_call_id")
                if ident not in open_calls:
                    return "messages", (
                        "Invalid parameter: messages with role 'tool' must be a response to a"
                        " preceeding message with 'tool_calls'."
                    )
                open_calls.remove(ident)
                if not isinstance(content, str):
                    return "messages", "a tool message's content must be a string"
                continue
            calls = message.get("tool_calls")
            if calls is not None:
                if role != "assistant" or not isinstance(calls, list) or not calls:
                    return "messages", "'tool_calls' must be a non-empty list on an assistant"
                for call in calls:
                    call = call if isinstance(call, dict) else {}
                    function = call.get("function")
                    if (
                        not isinstance(call.get("id"), str)
                        or call.get("type") != "function"
                        or not isinstance(function, dict)
                        or not isinstance(function.get("name"), str)
                        or not isinstance(function.get("arguments"), str)
                    ):
                        return "messages", (
                            "each tool call needs an id, 'type': 'function' and a function"
                            " with a name and arguments (a string)"
                        )
                    open_calls.append(call["id"])
                if content is not None and not isinstance(content, str):
                    return "messages", "an assistant message's content must be a string"
                continue
            problem = self._invalid_content(role, content)
            if problem is not None:
                return "messages", problem
        if open_calls:
            return "messages", f"tool_call_ids without response messages: {', '.join(open_calls)}"
        return None

    @staticmethod
    def _invalid_content(role: str, content: Any) -> str | None:
        if isinstance(content, str):
            return None
        if not isinstance(content, list) or not content:
            return f"a {role} message's content must be a string or a non-empty list of parts"
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                continue
            if kind != "image_url":
                return f"Invalid content part: {part!r}"
            if role != "user":
                return (
                    f"Image URLs are only allowed for messages with role 'user', but this"
                    f" message with role '{role}' contains an image URL."
                )
            image_url = part.get("image_url")
            url = image_url.get("url") if isinstance(image_url, dict) else None
            if not isinstance(url, str):
                return "an image_url part needs {'url': ...}"
            match = re.fullmatch(r"data:(image/[a-z+.-]+);base64,(.+)", url, re.S)
            if match is None and not url.startswith(("https://", "http://")):
                return "Invalid image URL: expected a data: URL of an image, or http(s)."
            if match is not None:
                try:
                    base64.b64decode(match.group(2), validate=True)
                except binascii.Error:
                    return "Invalid base64 image data."
        return None

    async def _pieces(self, record: RecordedRequest) -> list[str]:
        reply: Any = self.reply
        if callable(reply):
            reply = reply(record)
            if inspect.isawaitable(reply):
                reply = await reply
        if not isinstance(reply, str):
            return [p if isinstance(p, FakeToolCall | dict) else str(p) for p in reply if p]
        if self.chunk_size:
            size = self.chunk_size
            return [reply[i : i + size] for i in range(0, len(reply), size)]
        return split_words(reply)

    # -- wire format -------------------------------------------------------

    def _call_id(self, call: FakeToolCall) -> str:
        return call.id if call.id is not None else f"call_fake{next(self._ids)}"

    def _whole_call(self, call: FakeToolCall) -> dict[str, Any]:
        return {
            "id": self._call_id(call),
            "type": "function",
            "function": {"name": call.name, "arguments": call.arguments_text},
        }

    def _call_deltas(self, index: int, call: FakeToolCall) -> list[dict[str, Any]]:
        """The ``delta`` of each chunk that streams ``call``, as OpenAI sends them."""
        if call.whole:
            return [{"tool_calls": [{"index": index, **self._whole_call(call)}]}]
        first = {
            "index": index,
            "id": self._call_id(call),
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        text, size = call.arguments_text, max(1, self.arguments_chunk_size)
        rest = [
            {"tool_calls": [{"index": index, "function": {"arguments": text[i : i + size]}}]}
            for i in range(0, len(text), size)
        ]
        return [{"tool_calls": [first]}, *rest]

    def _completion(
        self,
        model: str,
        text: str,
        finish: str,
        tokens: int,
        *,
        tool_calls: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
        if tool_calls:
            message.update(content=text or None, tool_calls=tool_calls)
        return {
            "id": f"chatcmpl-fake{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": finish,
                }
            ],
            "usage": {
                "prompt_tokens": 10,
                "completion_tokens": tokens,
                "total_tokens": 10 + tokens,
            },
        }

    @staticmethod
    def _chunk(
        ident: str,
        model: str,
        delta: dict[str, Any],
        finish: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        return {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            **extra,
        }

    async def _stream(
        self, request: web.Request, record: RecordedRequest, pieces: list[str], finish: str
    ) -> web.StreamResponse:
        fault = self._faults.pop(0) if self._faults else None
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)

        async def send(payload: Any) -> None:
            data = payload if isinstance(payload, str) else json.dumps(payload)
            await response.write(f"data: {data}\n\n".encode())

        model = record.model or ""
        ident = f"chatcmpl-fake{next(self._ids)}"
        if self.keepalive:
            await response.write(b": OPENROUTER PROCESSING\n\n")
        await send(self._chunk(ident, model, {"role": "assistant", "content": ""}))
        calls = 0
        for index, piece in enumerate(pieces):
            if fault is not None and index == fault.after:
                return await self._fail_stream(request, response, send, fault, ident, model)
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            if isinstance(piece, FakeToolCall):
                for delta in self._call_deltas(calls, piece):
                    await send(self._chunk(ident, model, delta))
                calls += 1
            elif isinstance(piece, dict):
                await send(self._chunk(ident, model, piece))
            else:
                await send(self._chunk(ident, model, {"content": piece}))
        if fault is not None:  # asked to fail after more deltas than the reply has
            return await self._fail_stream(request, response, send, fault, ident, model)
        await send(self._chunk(ident, model, {}, finish))
        options = record.body.get("stream_options") or {}
        if isinstance(options, dict) and options.get("include_usage"):
            usage = {"prompt_tokens": 10, "completion_tokens": len(pieces)}
            usage["total_tokens"] = 10 + len(pieces)
            chunk = self._chunk(ident, model, {}, None, usage=usage)
            chunk["choices"] = []
            await send(chunk)
        await send("[DONE]")
        await response.write_eof()
        return response

    async def _fail_stream(
        self,
        request: web.Request,
        response: web.StreamResponse,
        send: Callable[[Any], Awaitable[None]],
        fault: _StreamFault,
        ident: str,
        model: str,
    ) -> web.StreamResponse:
        if fault.kind == "error":
            error = {"code": fault.code, "message": fault.message}
            if fault.style == "openrouter":
                # OpenRouter: HTTP 200 already sent, so the error rides in a chunk.
                await send(
                    self._chunk(
                        ident, model, {"content": ""}, "error", error=error, provider="fake"
                    )
                )
            else:
                await send({"error": {**error, "type": "server_error", "param": None}})
            await response.write_eof()
            return response
        if fault.kind == "reset":
            # Drop the connection without the chunked body's terminator.
            if request.transport is not None:
                request.transport.abort()
            return response
        await response.write_eof()  # "cut": the body ends cleanly, without finish or [DONE]
        return response
