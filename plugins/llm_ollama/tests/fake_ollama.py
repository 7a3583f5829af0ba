"""A loopback fake Ollama server for tests (this plugin's and cross-package ones).

It speaks the parts of Ollama's documented REST API that a chat bot uses, on
127.0.0.1 and a random port, so the real ``ollama`` client can be pointed at it::

    from fake_ollama import FakeOllama

    async with FakeOllama(reply="Hi there!") as server:
        generator = OllamaGenerator(host=server.url, model="llama3.2")
        ...
        assert server.chat_requests[-1]["options"]["temperature"] == 0.2

Endpoints: ``POST /api/chat`` (NDJSON streaming with ``message.content`` deltas
and a final ``done: true`` object, or one JSON object with ``"stream": false``),
``GET /api/tags``, ``GET /api/version``, ``POST /api/show`` and ``GET /api/ps``.
A model that is not in :attr:`FakeOllama.models` gets Ollama's 404
``model "x" not found, try pulling it first``.

Scripting:

- ``reply``: the reply text, a list of text and tool calls (:func:`tool_call`, sent in
  that order), or a callable ``(chat request body) -> either`` (may be async);
  :func:`tool_results` reads the results a request brings back;
- ``chunk_size``: characters per delta (default: one word per delta, like tokens);
- ``delay``: seconds between deltas;
- :meth:`FakeOllama.fail`: HTTP errors (500, 503, 429 with ``Retry-After``...) for
  the next N requests;
- :meth:`FakeOllama.bad_body_next`: a 200 with an HTML page (a proxy's or captive
  portal's) for the next N requests;
- :meth:`FakeOllama.break_stream`: the next streamed replies break after some
  deltas (``"disconnect"``, ``"invalid_json"``, ``"error_line"`` with ``error=`` its
  text, ``"no_done"``, ``"stall"``);
- :meth:`FakeOllama.hold`: pause the next stream after some deltas until an
  :class:`asyncio.Event` is set (to see deltas arrive one by one);
- :attr:`FakeOllama.requests`: every request received, in order
  (:attr:`~FakeOllama.last_chat` is the last ``/api/chat`` body: ``messages`` with
  their base64 ``images``, ``tool_calls`` and ``tool_name``, and ``tools``);
- ``add_model(name, capabilities=...)``: a model without ``"tools"`` answers a
  request with tools as Ollama does (400 ``<model> does not support tools``); one
  without ``"vision"`` fails on images as its runner does (a mid-stream ``error``
  line, or a 500 when not streamed).

Tool calls go out as Ollama streams them: each one whole (``arguments`` an object,
with Ollama's ``id`` and ``index``), consecutive calls together in one line with
``done: false``, then the final ``done: true`` line; a reply that is not streamed
has the text and every call in its one object. Requests are checked as Ollama's
server decodes them: images must be base64, a tool call's ``arguments`` an object,
a tool property's ``type`` a string or a list of strings (400 otherwise).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime
import hashlib
import inspect
import json
import re
import secrets
import string
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from hark.testing.loopback import FailureQueue, LoopbackServer, unused_port

__all__ = [
    "DEFAULT_REPLY",
    "HTML_PAGE",
    "STREAM_BREAKS",
    "FakeOllama",
    "Received",
    "normalize_model",
    "tool_call",
    "tool_results",
    "unused_url",
]

DEFAULT_REPLY = "Hello! I am a fake Ollama model, happy to help."
STREAM_BREAKS = ("disconnect", "invalid_json", "error_line", "no_done", "stall")

#: A tool call as Ollama's JSON has it: ``{"function": {"name": ..., "arguments": {...}}}``.
WireCall = dict[str, Any]
#: What a reply says: text, and tool calls in Ollama's format, in order.
Items = str | list[str | WireCall]
Reply = Items | Callable[[dict[str, Any]], "Items | Awaitable[Items]"]
#: What a model can do (``/api/show``'s ``capabilities``) unless told otherwise.
CAPABILITIES = ("completion", "tools", "vision")


#: What :meth:`FakeOllama.bad_body_next` answers with: a proxy's or captive portal's page.
HTML_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>Sign in</title></head>\n"
    '<body><p>Please <a href="http://portal.example/login">sign in</a>.</p></body>\n'
    "</html>\n"
)


def normalize_model(name: str) -> str:
    """Ollama's model naming: ``llama3.2`` means ``llama3.2:latest``."""
    name = name.strip()
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def unused_url() -> str:
    """An ``http://127.0.0.1:PORT`` where nothing listens (connections are refused)."""
    return f"http://127.0.0.1:{unused_port()}"


def tool_call(name: str, **arguments: Any) -> WireCall:
    """A scripted call of the tool ``name``, as Ollama reports one."""
    return {"function": {"name": name, "arguments": arguments}}


def tool_results(body: dict[str, Any]) -> list[str]:
    """The contents of the ``tool`` messages after the last user message of a chat
    request body (the results the model was just given)."""
    out: list[str] = []
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            break
        if message.get("role") == "tool":
            out.append(str(message.get("content", "")))
    return out[::-1]


def _call_id() -> str:
    """An id as Ollama gives each call (``call_`` and 8 letters or digits)."""
    alphabet = string.ascii_lowercase + string.digits
    return "call_" + "".join(secrets.choice(alphabet) for _ in range(8))


def split_tokens(text: str) -> list[str]:
    """Split like a tokenizer would stream: one word (with its leading space) per piece."""
    pieces = re.findall(r"\s*\S+", text)
    rest = text[len("".join(pieces)) :]
    if rest:
        pieces.append(rest)
    return pieces


@dataclass(slots=True)
class Received:
    """One request the fake server received."""

    method: str
    path: str
    json: Any
    headers: dict[str, str]


@dataclass(slots=True)
class _Break:
    mode: str
    after: int
    remaining: int
    error: str = "an error was encountered while running the model"


@dataclass(slots=True)
class _Hold:
    after: int
    event: asyncio.Event


@dataclass(slots=True)
class _Model:
    name: str
    details: dict[str, Any] = field(default_factory=dict)
    capabilities: tuple[str, ...] = CAPABILITIES

    @property
    def full_name(self) -> str:
        """The name Ollama's errors give (``registry.ollama.ai/library/x:latest``)."""
        return self.name if "/" in self.name else f"registry.ollama.ai/library/{self.name}"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


class FakeOllama(LoopbackServer):
    """A scriptable Ollama-compatible HTTP server on 127.0.0.1 (see the module docs)."""

    server_name = "the fake Ollama server"
    shutdown_timeout = 0.5

    def __init__(
        self,
        *,
        models: Iterable[str] = ("llama3.2:latest",),
        reply: Reply = DEFAULT_REPLY,
        chunk_size: int | None = None,
        delay: float = 0.0,
        version: str = "0.6.8",
    ) -> None:
        super().__init__()
        self._models: dict[str, _Model] = {}
        for name in models:
            self.add_model(name)
        self.reply = reply
        self.chunk_size = chunk_size
        self.delay = delay
        self.version = version
        #: Answer streamed chat requests with one JSON object, as a proxy that drops
        #: ``stream`` would.
        self.ignore_stream = False
        #: Every request received, in order (failed and retried ones included).
        self.requests: list[Received] = []
        #: Streams currently being written (0 once every reply finished or was dropped).
        self.open_streams = 0
        self._failures = FailureQueue()
        self._breaks: list[_Break] = []
        self._holds: list[_Hold] = []
        self._stalled: set[asyncio.Event] = set()

    # -- lifecycle -------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/chat", self._chat)
        app.router.add_get("/api/tags", self._tags)
        app.router.add_get("/api/version", self._version)
        app.router.add_post("/api/show", self._show)
        app.router.add_get("/api/ps", self._ps)
        app.router.add_get("/", self._root)

    async def close(self) -> None:
        for event in list(self._stalled):
            event.set()
        await super().close()

    # -- scripting -------------------------------------------------------

    @property
    def models(self) -> list[str]:
        return list(self._models)

    def add_model(
        self, name: str, *, capabilities: Iterable[str] = CAPABILITIES, **details: Any
    ) -> None:
        """Make ``name`` (``llama3.2`` = ``llama3.2:latest``) available, as if pulled,
        with ``capabilities`` (``completion``, ``tools``, ``vision``)."""
        full = normalize_model(name)
        self._models[full] = _Model(full, details, tuple(capabilities))

    def remove_model(self, name: str) -> None:
        self._models.pop(normalize_model(name), None)

    def fail(
        self,
        status: int = 500,
        times: int = 1,
        *,
        retry_after: float | str | None = None,
        error: str | None = None,
        paths: Iterable[str] = ("/api/chat",),
    ) -> None:
        """Answer the next ``times`` requests to ``paths`` with HTTP ``status``.

        ``retry_after`` adds a ``Retry-After`` header; ``error`` is the JSON error text."""
        self._failures.add(
            status,
            times=times,
            keys=paths,
            retry_after=retry_after,
            message=error or f"fake failure (HTTP {status})",
        )

    def bad_body_next(self, times: int = 1, *, paths: Iterable[str] = ("/api/chat",)) -> None:
        """Answer the next ``times`` requests to ``paths`` 200 with an HTML page
        (:data:`HTML_PAGE`, ``text/html``), as a proxy or captive portal would. Queued in
        order with :meth:`fail`'s failures."""
        self._failures.add(200, times=times, keys=paths, body="html")

    def break_stream(
        self, mode: str, *, after: int = 1, times: int = 1, error: str | None = None
    ) -> None:
        """Break the next ``times`` streamed chat replies after ``after`` deltas.

        ``disconnect``: the connection is dropped mid-body; ``invalid_json``: a line
        that is not JSON; ``error_line``: ``{"error": ...}`` as Ollama sends for
        mid-stream failures (``error`` its text); ``no_done``: the body ends without
        ``done: true``; ``stall``: no more bytes until the server closes (for timeouts)."""
        if mode not in STREAM_BREAKS:
            raise ValueError(f"unknown stream break {mode!r}; one of {STREAM_BREAKS}")
        brk = _Break(mode, after, times)
        if error is not None:
            brk.error = error
        self._breaks.append(brk)

    def hold(self, after: int = 1) -> asyncio.Event:
        """Pause the next streamed reply after ``after`` lines (text pieces or tool calls)
        until the event is set; a reply with no more lines than that pauses before its
        final ``done`` line."""
        event = asyncio.Event()
        self._holds.append(_Hold(after, event))
        return event

    def reset(self) -> None:
        """Forget received requests and pending failures, breaks and holds."""
        self.requests.clear()
        self._failures.clear()
        self._breaks.clear()
        for hold in self._holds:
            hold.event.set()
        self._holds.clear()

    # -- what was received -----------------------------------------------

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        """Bodies of every ``POST /api/chat`` received, in order."""
        return [r.json for r in self.requests if r.path == "/api/chat"]

    @property
    def last_chat(self) -> dict[str, Any]:
        return self._last(self.chat_requests, "chat request")

    @property
    def last_images(self) -> list[bytes]:
        """The images of the last chat request, decoded, in message order."""
        return [
            base64.b64decode(image)
            for message in self.last_chat.get("messages") or []
            for image in message.get("images") or []
        ]

    def count(self, path: str = "/api/chat") -> int:
        return sum(1 for r in self.requests if r.path == path)

    # -- helpers -----------------------------------------------------------

    async def _record(self, request: web.Request) -> Received:
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
        received = Received(request.method, request.path, body, dict(request.headers))
        self.requests.append(received)
        return received

    @staticmethod
    def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
        return web.json_response({"error": message}, status=status, headers=headers)

    def _failure_response(self, path: str) -> web.Response | None:
        failure = self._failures.take(path)
        if failure is None:
            return None
        if failure.details.get("body") == "html":
            return web.Response(text=HTML_PAGE, content_type="text/html")
        return self._error(failure.status, failure.message or "", failure.headers)

    def _find(self, name: Any) -> _Model | None:
        if not isinstance(name, str) or not name.strip():
            return None
        return self._models.get(normalize_model(name))

    @staticmethod
    def _not_found(name: str) -> web.Response:
        return FakeOllama._error(404, f'model "{name}" not found, try pulling it first')

    def _tags_entry(self, model: _Model) -> dict[str, Any]:
        digest = hashlib.sha256(model.name.encode()).hexdigest()
        family = model.name.split(":", 1)[0].split("/")[-1].rstrip("0123456789.")
        details = {
            "parent_model": "",
            "format": "gguf",
            "family": family or "llama",
            "families": [family or "llama"],
            "parameter_size": "3.2B",
            "quantization_level": "Q4_K_M",
            **model.details,
        }
        return {
            "name": model.name,
            "model": model.name,
            "modified_at": "2025-01-01T00:00:00Z",
            "size": 2_019_393_189,
            "digest": digest,
            "details": details,
        }

    async def _reply_items(self, body: dict[str, Any]) -> list[str | WireCall]:
        reply = self.reply
        if callable(reply):
            reply = reply(body)
            if inspect.isawaitable(reply):
                reply = await reply
        if isinstance(reply, str):
            return [reply]
        if isinstance(reply, list):
            return reply
        return [str(reply)]

    def _split(self, text: str) -> list[str]:
        if self.chunk_size:
            return [text[i : i + self.chunk_size] for i in range(0, len(text), self.chunk_size)]
        return split_tokens(text)

    def _pieces(
        self, items: list[str | WireCall], options: dict[str, Any]
    ) -> tuple[list[str | list[WireCall]], str]:
        """Stream lines: text pieces, and runs of consecutive calls (one line each, as
        Ollama's parser hands them on). ``num_predict`` cuts the text like tokens."""
        pieces: list[str | list[WireCall]] = []
        index = 0
        for item in items:
            if isinstance(item, str):
                pieces += self._split(item)
                continue
            call = {**item, "id": item.get("id", _call_id())}
            if isinstance(call.get("function"), dict):
                call["function"] = {"index": index, **call["function"]}
            index += 1
            if pieces and isinstance(pieces[-1], list):
                pieces[-1].append(call)
            else:
                pieces.append([call])
        limit = options.get("num_predict")
        texts = [i for i, piece in enumerate(pieces) if isinstance(piece, str)]
        if isinstance(limit, int) and 0 <= limit < len(texts):
            return pieces[: texts[limit]], "length"
        return pieces, "stop"

    @staticmethod
    def _line(model: str, piece: str | list[WireCall]) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": ""}
        if isinstance(piece, str):
            message["content"] = piece
        else:
            message["tool_calls"] = piece
        return {"model": model, "created_at": _now(), "message": message, "done": False}

    @staticmethod
    def _invalid(body: dict[str, Any]) -> str | None:
        """What Ollama's server would refuse in ``body`` (its JSON decoding), or None."""
        for message in body.get("messages") or []:
            if not isinstance(message, dict):
                return "messages must be objects"
            for image in message.get("images") or []:
                try:
                    base64.b64decode(image, validate=True)
                except (binascii.Error, TypeError, ValueError):
                    return "illegal base64 data at input byte 0"
            for call in message.get("tool_calls") or []:
                function = call.get("function") if isinstance(call, dict) else None
                arguments = function.get("arguments") if isinstance(function, dict) else None
                if not isinstance(arguments, dict):
                    return (
                        "json: cannot unmarshal into Go struct field"
                        " ToolCallFunction.messages.tool_calls.function.arguments"
                    )
        for tool in body.get("tools") or []:
            parameters = (tool.get("function") or {}).get("parameters") or {}
            for prop in (parameters.get("properties") or {}).values():
                kind = prop.get("type")
                if kind is not None and not (
                    isinstance(kind, str)
                    or (isinstance(kind, list) and all(isinstance(k, str) for k in kind))
                ):
                    return "json: cannot unmarshal into Go value of type api.PropertyType"
        return None

    @staticmethod
    def _has_images(body: dict[str, Any]) -> bool:
        return any(m.get("images") for m in body.get("messages") or [])

    @staticmethod
    def _final(
        model: str, pieces: list[str | list[WireCall]], reason: str, messages: Any
    ) -> dict[str, Any]:
        prompt_tokens = sum(
            len(split_tokens(str(m.get("content", ""))))
            for m in (messages if isinstance(messages, list) else [])
            if isinstance(m, dict)
        )
        return {
            "model": model,
            "created_at": _now(),
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": reason,
            "total_duration": 1_000_000 * (len(pieces) + 1),
            "load_duration": 100_000,
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": 500_000,
            "eval_count": len(pieces),
            "eval_duration": 1_000_000 * len(pieces),
        }

    # -- endpoints -------------------------------------------------------

    async def _root(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.Response(text="Ollama is running")

    async def _version(self, request: web.Request) -> web.Response:
        await self._record(request)
        return self._failure_response(request.path) or web.json_response({"version": self.version})

    async def _tags(self, request: web.Request) -> web.Response:
        await self._record(request)
        failed = self._failure_response(request.path)
        if failed is not None:
            return failed
        return web.json_response({"models": [self._tags_entry(m) for m in self._models.values()]})

    async def _ps(self, request: web.Request) -> web.Response:
        await self._record(request)
        return self._failure_response(request.path) or web.json_response({"models": []})

    async def _show(self, request: web.Request) -> web.Response:
        received = await self._record(request)
        failed = self._failure_response(request.path)
        if failed is not None:
            return failed
        body = received.json if isinstance(received.json, dict) else {}
        name = body.get("model") or body.get("name") or ""
        model = self._find(name)
        if model is None:
            return self._not_found(str(name))
        entry = self._tags_entry(model)
        return web.json_response(
            {
                "modelfile": f"FROM {model.name}\n",
                "parameters": "",
                "template": "{{ .Prompt }}",
                "details": entry["details"],
                "model_info": {"general.architecture": entry["details"]["family"]},
                "capabilities": list(model.capabilities),
                "modified_at": entry["modified_at"],
            }
        )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        received = await self._record(request)
        failed = self._failure_response(request.path)
        if failed is not None:
            return failed
        body = received.json
        if not isinstance(body, dict):
            return self._error(400, "invalid request body")
        name = body.get("model")
        if not isinstance(name, str) or not name:
            return self._error(400, "model is required")
        model = self._find(name)
        if model is None:
            return self._not_found(name)
        messages = body.get("messages")
        if messages is not None and not isinstance(messages, list):
            return self._error(400, "messages must be a list")
        options = body.get("options") or {}
        if not isinstance(options, dict):
            return self._error(400, "options must be an object")
        invalid = self._invalid(body)
        if invalid is not None:
            return self._error(400, invalid)
        if body.get("tools") and "tools" not in model.capabilities:
            return self._error(400, f"{model.full_name} does not support tools")
        streamed = body.get("stream") is not False and not self.ignore_stream
        if self._has_images(body) and "vision" not in model.capabilities:
            # Ollama does not check this up front: the runner fails on the image.
            return await self._no_vision(request, streamed)

        items = await self._reply_items(body)
        pieces, reason = self._pieces(items, options)
        final = self._final(name, pieces, reason, messages)

        if not streamed:
            final["message"]["content"] = "".join(p for p in pieces if isinstance(p, str))
            calls = [call for piece in pieces if isinstance(piece, list) for call in piece]
            if calls:
                final["message"]["tool_calls"] = calls
            return web.json_response(final)
        return await self._stream(request, name, pieces, final)

    async def _no_vision(self, request: web.Request, streamed: bool) -> web.StreamResponse:
        error = (
            "Failed to create new sequence: failed to process inputs: this model is missing"
            " data required for image input"
        )
        if not streamed:
            return self._error(500, error)
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        await response.write(json.dumps({"error": error}).encode() + b"\n")
        await response.write_eof()
        return response

    async def _stream(
        self,
        request: web.Request,
        model: str,
        pieces: list[str | list[WireCall]],
        final: dict[str, Any],
    ) -> web.StreamResponse:
        brk = self._breaks[0] if self._breaks else None
        if brk is not None:
            brk.remaining -= 1
            if brk.remaining <= 0:
                self._breaks.pop(0)
        hold = self._holds.pop(0) if self._holds else None

        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        self.open_streams += 1
        try:
            for index, piece in enumerate(pieces):
                if brk is not None and index == brk.after:
                    return await self._break(request, response, brk)
                if hold is not None and index == hold.after:
                    await hold.event.wait()
                if index and self.delay:
                    await asyncio.sleep(self.delay)
                line = self._line(model, piece)
                await response.write(json.dumps(line).encode() + b"\n")
            if brk is not None:
                return await self._break(request, response, brk)
            if hold is not None and hold.after >= len(pieces):
                await hold.event.wait()  # everything said, the `done` line held back
            await response.write(json.dumps(final).encode() + b"\n")
            await response.write_eof()
        except ConnectionError:
            # The client went away (aclose, cancel): nothing more to send.
            pass
        finally:
            self.open_streams -= 1
        return response

    async def _break(
        self, request: web.Request, response: web.StreamResponse, brk: _Break
    ) -> web.StreamResponse:
        mode = brk.mode
        if mode == "invalid_json":
            await response.write(b'{"model": "oops", "message": {"content": \n')
        elif mode == "error_line":
            await response.write(json.dumps({"error": brk.error}).encode() + b"\n")
        elif mode == "stall":
            event = asyncio.Event()
            self._stalled.add(event)
            try:
                await event.wait()
            finally:
                self._stalled.discard(event)
        if mode == "disconnect" or mode == "stall":
            transport = request.transport
            if transport is not None:
                transport.abort()
            return response
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response
