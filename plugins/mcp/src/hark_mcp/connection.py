"""One MCP server: connecting, watching, reconnecting with backoff, calling its tools.

Each :class:`MCPConnection` runs one background task for its whole life. The
task connects (a stdio server is started as a subprocess; an HTTP server is
reached with its headers), lists the tools, and then watches: a stdio server
whose output ends has died; every ``check_interval`` seconds the tools are
listed again, which notices a server that stopped answering and picks up a
changed list. When the session ends for any reason other than :meth:`stop`, the
state goes to "down" with the reason, and the task waits (exponential backoff,
jittered, capped) before it connects again. :meth:`reconnect` skips the wait.

Sessions are always entered and left by that one task (the SDK's task groups
require it); tool calls from turns only send requests on the open session.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import random
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import hark
from hark.api import redact
from hark_mcp.config import ServerConfig

if TYPE_CHECKING:
    from mcp import Client
    from mcp import types as mcp_types

# The MCP SDK (with anyio, httpx2, starlette and uvicorn: ~30 MB) is imported where a
# session starts or one of its results or errors is read, not with the plugin: `bot
# plugins` and a bot with no MCP server configured never load it.

log = logging.getLogger("hark.plugin.mcp")

# What a tool result may say at most about one error (the whole result is cut by the core).
_MAX_ERROR = 1_000
_MAX_LISTED_PAGES = 20


class State(enum.StrEnum):
    CONNECTING = "connecting"
    UP = "up"
    DOWN = "down"
    STOPPED = "stopped"


class MCPToolError(Exception):
    """A call that failed in a way the model should read (``user_message``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.user_message = message


class _Down(Exception):
    """Ends a session: the reason is what `!mcp` shows."""


def _short(text: str, limit: int = 200) -> str:
    text = redact(" ".join(str(text).split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_error(exc: BaseException) -> str:
    """One short line for an exception from the SDK, a transport or a subprocess."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, _Down):
        return str(exc)
    import httpx2
    from mcp import MCPError
    from mcp import types as mcp_types

    if isinstance(exc, MCPError):
        if exc.code == mcp_types.CONNECTION_CLOSED:
            return "the server closed the connection"
        return _short(f"MCP error {exc.code}: {exc.error.message}")
    if isinstance(exc, httpx2.ConnectError):
        return "could not connect"
    if isinstance(exc, httpx2.TimeoutException):
        return "no answer (HTTP timeout)"
    if isinstance(exc, httpx2.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, httpx2.HTTPError):
        return _short(f"HTTP error: {type(exc).__name__}")
    if isinstance(exc, FileNotFoundError):
        return "the command was not found"
    if isinstance(exc, PermissionError):
        return "the command may not be run (permission denied)"
    if isinstance(exc, OSError):
        return _short(f"could not start: {exc.strerror or type(exc).__name__}")
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    message = str(exc)
    return _short(f"{type(exc).__name__}: {message}" if message else type(exc).__name__)


def _http_reason(status: int) -> str:
    if status in (401, 403):
        return f"the server refused the connection (HTTP {status}): check its headers (a token?)"
    if status == 404:
        return "nothing at that URL (HTTP 404): check its path (often /mcp)"
    return f"the server answered HTTP {status}"


def result_text(result: mcp_types.CallToolResult) -> str:
    """A tool result as the text the model reads; an ``isError`` result raises
    :class:`MCPToolError` with the server's text."""
    from mcp import types as mcp_types

    parts: list[str] = []
    for block in result.content:
        if isinstance(block, mcp_types.TextContent):
            parts.append(block.text)
        elif isinstance(block, mcp_types.ImageContent):
            parts.append(f"[image ({block.mime_type}) not shown]")
        elif isinstance(block, mcp_types.AudioContent):
            parts.append(f"[audio ({block.mime_type}) not played]")
        elif isinstance(block, mcp_types.ResourceLink):
            parts.append(f"[resource {block.name}: {block.uri}]")
        elif isinstance(block, mcp_types.EmbeddedResource):
            resource = block.resource
            if isinstance(resource, mcp_types.TextResourceContents):
                parts.append(resource.text)
            else:
                parts.append(f"[binary resource {resource.uri} not shown]")
    if not parts and result.structured_content is not None:
        import json

        parts.append(json.dumps(result.structured_content, ensure_ascii=False, default=str))
    # A result may quote the server's environment: registered secrets never reach the model.
    text = redact("\n".join(parts)).strip()
    if result.is_error:
        message = text or "the tool reported an error"
        raise MCPToolError(message[:_MAX_ERROR])
    return text or "(no output)"


class _Watched:
    """The session's read stream, telling the connection when it ends (a stdio
    server that exited). Everything else is the SDK stream's own behaviour."""

    def __init__(self, stream: Any, on_end: Callable[[], None]) -> None:
        self._stream = stream
        self._on_end = on_end

    async def receive(self) -> Any:
        import anyio

        try:
            return await self._stream.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._on_end()
            raise

    async def aclose(self) -> None:
        await self._stream.aclose()

    def __aiter__(self) -> _Watched:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self._stream.__anext__()
        except StopAsyncIteration:
            self._on_end()
            raise

    async def __aenter__(self) -> _Watched:
        await self._stream.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        self._on_end()
        return await self._stream.__aexit__(*exc_info)

    def __getattr__(self, name: str) -> Any:  # last_context, for the SDK's dispatcher
        return getattr(self._stream, name)


class MCPConnection:
    """The bot's connection to one configured MCP server."""

    # Waits between attempts: backoff_min doubling up to backoff_max, each jittered
    # to 50-100 %. A session that stayed up backoff_reset seconds starts over.
    backoff_min = 1.0
    backoff_max = 300.0
    backoff_reset = 60.0
    # How long stop() lets the session close (the SDK gives a stdio server 2 s to
    # exit, then terminates its process group) before cancelling it.
    stop_grace = 10.0

    def __init__(
        self,
        name: str,
        config: ServerConfig,
        *,
        on_change: Callable[[MCPConnection], None] | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.state = State.CONNECTING
        self.error: str | None = None
        self.tools: list[mcp_types.Tool] = []
        self.server_info: str | None = None
        self.retry_at: float | None = None
        self.connects = 0
        self.failures = 0
        # Connection attempts so far (each one goes through "connecting").
        self.attempts = 0
        # Bumped whenever what tools_for() offers may change (state or tool list).
        self.generation = 0
        self._on_change = on_change
        self._client: Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._poke = asyncio.Event()
        self._stopping = False
        self._reconnect = False
        self._refresh = False
        self._ended = False
        self._lost: str | None = None
        # The last HTTP error status of the session: the SDK reports only "an error".
        self._http_status: int | None = None
        self._logged_reason: str | None = None
        self._stderr: deque[str] = deque(maxlen=5)
        self._settled = asyncio.Event()

    # -- control ------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"mcp-{self.name}")

    async def stop(self) -> None:
        """Close the session (a stdio server's process ends) and stop reconnecting."""
        self._stopping = True
        self._poke.set()
        task, self._task = self._task, None
        if task is not None and not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), self.stop_grace)
            except TimeoutError:
                log.warning(
                    "mcp: %s did not close in %gs; cancelling it", self.name, self.stop_grace
                )
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            except asyncio.CancelledError:
                task.cancel()
                raise
        self._set(State.STOPPED)

    def reconnect(self) -> None:
        """End the session (if any) and connect again now, without waiting."""
        self._reconnect = True
        self.failures = 0
        self._poke.set()

    async def wait_settled(self, timeout: float, *, after: int = 0) -> State:
        """Wait until an attempt later than number ``after`` is up or down (or
        ``timeout`` passed); the state then."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self.attempts <= after or self.state is State.CONNECTING:
                    self._settled.clear()
                    await self._settled.wait()
        return self.state

    @property
    def allowed_tools(self) -> list[mcp_types.Tool]:
        return [t for t in self.tools if self.config.allows(t.name)]

    @property
    def stderr_tail(self) -> list[str]:
        return list(self._stderr)

    def describe(self) -> str:
        """The state in a few words, for `!mcp` and `!plugins`."""
        if self.state is State.UP:
            allowed, listed = len(self.allowed_tools), len(self.tools)
            return f"up, {allowed} of {listed} tools allowed"
        if self.state is State.DOWN:
            text = f"down: {self.error or 'disconnected'}"
            if self.retry_at is not None:
                wait = max(0.0, self.retry_at - asyncio.get_running_loop().time())
                text += f"; next try in {wait:.0f}s"
            return text
        if self.state is State.CONNECTING:
            return "connecting" + (f" (last error: {self.error})" if self.error else "")
        return "stopped"

    # -- calls --------------------------------------------------------------------

    async def call(self, tool_name: str, arguments: dict[str, Any], timeout: float) -> str:
        """Call one tool; its text, or :class:`MCPToolError` / TimeoutError."""
        client = self._client
        if client is None or self.state is not State.UP:
            raise MCPToolError(f"the MCP server {self.name} is not connected right now")
        from mcp import MCPError
        from mcp import types as mcp_types

        try:
            result = await client.call_tool(tool_name, arguments, read_timeout_seconds=timeout)
        except MCPError as exc:
            if exc.code == mcp_types.REQUEST_TIMEOUT:
                raise TimeoutError(f"{tool_name} timed out") from None
            if exc.code == mcp_types.CONNECTION_CLOSED:
                self._lose("the connection closed")
                raise MCPToolError(f"the MCP server {self.name} disconnected") from None
            message = exc.error.message or f"MCP error {exc.code}"
            raise MCPToolError(_short(message, _MAX_ERROR)) from None
        except (TimeoutError, asyncio.CancelledError, MCPToolError):
            raise
        except Exception as exc:
            # A transport failure (an HTTP server gone): check the session now.
            self._check_soon()
            raise MCPToolError(
                f"the MCP server {self.name} could not be reached ({describe_error(exc)})"
            ) from None
        if not isinstance(result, mcp_types.CallToolResult):
            raise MCPToolError("the server answered with something other than a tool result")
        return result_text(result)

    # -- the connection's task ----------------------------------------------------

    def _set(
        self, state: State, *, error: str | None = None, retry_at: float | None = None
    ) -> None:
        self.state = state
        self.error = error if state is not State.UP else None
        self.retry_at = retry_at
        self.generation += 1
        self._settled.set()
        if self._on_change is not None:
            try:
                self._on_change(self)
            except Exception:
                log.exception("mcp: a state listener failed")

    def _lose(self, reason: str) -> None:
        if self._lost is None:
            self._lost = reason
        self._poke.set()

    def _check_soon(self) -> None:
        self._refresh = True
        self._poke.set()

    def _on_ended(self) -> None:
        self._ended = True
        self._poke.set()

    def _delay(self) -> float:
        base = min(self.backoff_max, self.backoff_min * 2 ** max(0, self.failures - 1))
        return base * random.uniform(0.5, 1.0)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            self.attempts += 1
            self._set(State.CONNECTING, error=self.error)
            started = loop.time()
            up_since: list[float] = []
            try:
                await self._session(up_since)
                reason = "closed"
            except Exception as exc:
                reason = describe_error(exc)
                if self._http_status is not None and not up_since:
                    reason = _http_reason(self._http_status)
            self._client = None
            if self._stopping:
                break
            if up_since and loop.time() - up_since[0] >= self.backoff_reset:
                self.failures = 0
            if self._reconnect:
                self._reconnect = False
                self.failures, delay = 0, 0.0
                reason = "reconnecting on request"
                log.info("mcp: %s: reconnecting on request", self.name)
            else:
                self.failures += 1
                delay = self._delay()
                tail = f" (it said: {self._stderr[-1]})" if self._stderr and not up_since else ""
                reason = f"{reason}{tail}"
                # Once per reason: a server that stays broken is not logged every retry.
                level = logging.DEBUG if reason == self._logged_reason else logging.WARNING
                self._logged_reason = reason
                log.log(
                    level,
                    "mcp: %s is down after %.1fs: %s; trying again in %.1fs",
                    self.name,
                    loop.time() - started,
                    reason,
                    delay,
                )
            self._set(State.DOWN, error=reason, retry_at=loop.time() + delay if delay else None)
            if delay:
                self._poke.clear()
                if not (self._stopping or self._reconnect):
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._poke.wait(), delay)
            self._reconnect = False

    async def _session(self, up_since: list[float]) -> None:
        from mcp import Client
        from mcp import types as mcp_types

        cfg = self.config
        self._lost, self._ended, self._refresh = None, False, False
        self._http_status = None
        self._stderr.clear()
        async with contextlib.AsyncExitStack() as stack:
            client = Client(
                self._transport(),
                mode=cfg.protocol,
                # Every list reaches the server: the list is what shows it is alive.
                cache=None,
                client_info=mcp_types.Implementation(name="hark", version=hark.__version__),
                message_handler=self._on_message,
            )
            try:
                async with asyncio.timeout(cfg.connect_timeout):
                    await stack.enter_async_context(client)
                    tools = await self._list(client)
            except TimeoutError:
                raise _Down(f"no answer within {cfg.connect_timeout:g}s") from None
            self._client = client
            self.tools = tools
            info = client.server_info
            self.server_info = f"{info.name} {info.version}".strip() if info else None
            self.connects += 1
            self._logged_reason = None
            up_since.append(asyncio.get_running_loop().time())
            self._set(State.UP)
            log.info(
                "mcp: %s is up (%s): %d tools, %d allowed",
                self.name,
                self.server_info or "unnamed server",
                len(self.tools),
                len(self.allowed_tools),
            )
            try:
                await self._watch(client)
            finally:
                self._client = None

    async def _watch(self, client: Client) -> None:
        interval = self.config.check_interval or None
        while True:
            self._poke.clear()
            if self._stopping:
                return
            if self._reconnect:
                raise _Down("reconnecting on request")
            if self._ended:
                raise _Down("the server closed the connection")
            if self._lost is not None:
                raise _Down(self._lost)
            if self._refresh:
                self._refresh = False
                await self._check(client)
                continue
            try:
                async with asyncio.timeout(interval):
                    await self._poke.wait()
            except TimeoutError:
                await self._check(client)

    async def _check(self, client: Client) -> None:
        """List the tools again: the server answers, and the list may have changed."""
        try:
            async with asyncio.timeout(min(30.0, self.config.connect_timeout)):
                tools = await self._list(client)
        except TimeoutError:
            raise _Down("the server stopped answering") from None
        if [t.model_dump() for t in tools] != [t.model_dump() for t in self.tools]:
            log.info("mcp: %s changed its tools: %d now", self.name, len(tools))
            self.tools = tools
            self.generation += 1
            if self._on_change is not None:
                self._on_change(self)

    async def _list(self, client: Client) -> list[mcp_types.Tool]:
        tools: list[mcp_types.Tool] = []
        cursor: str | None = None
        for _ in range(_MAX_LISTED_PAGES):
            page = await client.list_tools(cursor=cursor)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        return tools

    async def _on_message(self, message: Any) -> None:
        from mcp import types as mcp_types

        if isinstance(message, mcp_types.ToolListChangedNotification):
            self._check_soon()
        elif isinstance(message, Exception):
            # A transport fault (an HTTP stream broke): find out whether the session lives.
            log.debug("mcp: %s: transport problem: %s", self.name, describe_error(message))
            self._check_soon()

    # -- transports ---------------------------------------------------------------

    def _transport(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return self._stdio() if self.config.command is not None else self._http()

    @contextlib.asynccontextmanager
    async def _stdio(self) -> AsyncIterator[tuple[Any, Any]]:
        from mcp import StdioServerParameters, stdio_client

        cfg = self.config
        assert cfg.command is not None
        params = StdioServerParameters(
            command=cfg.command, args=list(cfg.args), env=dict(cfg.env) or None, cwd=cfg.cwd
        )
        # The server's stderr comes through a pipe: logged (redacted) at debug level,
        # and its last lines explain a server that would not start.
        read_fd, write_fd = os.pipe()
        errlog = os.fdopen(write_fd, "w")
        reader = asyncio.create_task(self._read_stderr(read_fd), name=f"mcp-{self.name}-stderr")
        try:
            async with stdio_client(params, errlog=errlog) as (read, write):
                errlog.close()  # the server has its own copy
                yield _Watched(read, self._on_ended), write
        finally:
            errlog.close()
            try:
                await asyncio.wait({reader}, timeout=0.5)
            finally:
                if not reader.done():  # a child of the server may still hold the pipe open
                    reader.cancel()

    async def _read_stderr(self, fd: int) -> None:
        loop = asyncio.get_running_loop()
        stream = asyncio.StreamReader(limit=1 << 20, loop=loop)
        pipe = os.fdopen(fd, "rb")
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(stream, loop=loop), pipe
        )
        try:
            while True:
                try:
                    line = await stream.readline()
                except ValueError:  # one line over the limit: skipped
                    continue
                if not line:
                    return
                text = _short(line.decode("utf-8", errors="replace"), 300)
                if text:
                    self._stderr.append(text)
                    log.debug("mcp: %s: %s", self.name, text)
        finally:
            transport.close()

    @contextlib.asynccontextmanager
    async def _http(self) -> AsyncIterator[tuple[Any, Any]]:
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        cfg = self.config
        assert cfg.url is not None
        # The SDK's defaults: 30 s to connect or send, 5 min to read (streams stay open).
        timeout = httpx2.Timeout(30.0, read=300.0)

        async def note(response: httpx2.Response) -> None:
            if response.status_code >= 400:
                self._http_status = response.status_code

        async with (
            httpx2.AsyncClient(
                headers=dict(cfg.headers), timeout=timeout, event_hooks={"response": [note]}
            ) as http,
            streamable_http_client(cfg.url, http_client=http) as (read, write),
        ):
            yield _Watched(read, self._on_ended), write
