"""One EventSub WebSocket session on aiohttp, in the bot's own event loop.

Follows Twitch's documented session rules:

- the first message on a connection is ``session_welcome`` (session id and
  ``keepalive_timeout_seconds``); subscriptions must be created within 10 s;
- any message resets the keepalive clock; none for longer than the keepalive
  timeout means the connection is dead (:class:`KeepaliveTimeout`);
- ``session_reconnect`` carries a ``reconnect_url``: connect there, wait for its
  welcome while still reading the old connection, then close the old one. The
  subscriptions move with the session; nothing is re-created;
- ``revocation`` names a subscription Twitch will no longer send;
- notifications are de-duplicated by ``message_id`` (Twitch may redeliver).

The client never sends anything (Twitch closes with 4001 on inbound traffic);
aiohttp answers Twitch's pings by itself.

Why not twitchAPI's ``EventSubWebsocket``: it runs in a thread of its own whose
``start()`` busy-waits in the caller's thread (the bot's event loop) and never
returns when the first connection fails, and its notification de-duplication
never records an id. See the README.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from hark import (
    BadOutputError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
)
from hark.api import ErrorTranslator, HttpFailure

log = logging.getLogger(__name__)

PROVIDER = "twitch"

# Twitch's close codes, for log lines.
CLOSE_REASONS = {
    4000: "internal server error",
    4001: "client sent inbound traffic",
    4002: "client failed ping-pong",
    4003: "connection unused (no subscription in time)",
    4004: "reconnect grace time expired",
    4005: "network timeout",
    4006: "network error",
    4007: "invalid reconnect",
}


class ConnectionLost(ProviderConnectionError):
    """The WebSocket closed (``code`` is the close code, when there was one)."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message, provider=PROVIDER)
        self.code = code


class KeepaliveTimeout(ProviderTimeoutError):
    """Neither an event nor a keepalive arrived within the session's keepalive timeout."""


@dataclass(eq=False)
class _Socket:
    ws: aiohttp.ClientWebSocketResponse
    session_id: str
    keepalive: float
    last_seen: float = field(default_factory=time.monotonic)
    reader: asyncio.Task[None] | None = None

    def deadline(self, grace: float) -> float:
        return self.last_seen + self.keepalive + grace


def _refused(failure: HttpFailure) -> ProviderError:
    """Any status in answer to the WebSocket handshake: the connection was refused."""
    return ConnectionLost(f"the EventSub WebSocket refused the connection (HTTP {failure.status})")


def _close_text(code: int | None) -> str:
    if code is None:
        return "closed"
    reason = CLOSE_REASONS.get(code)
    return f"closed with {code}" + (f" ({reason})" if reason else "")


class EventSubSession:
    """Connect, then :meth:`run` until the session is lost (it always ends by raising).

    ``on_notification(message)`` and ``on_revocation(message)`` get the decoded JSON
    messages; ``on_moved(session_id)`` is told when a reconnect moved the session to a
    new connection. Callbacks are synchronous and must not block.
    """

    def __init__(
        self,
        http: aiohttp.ClientSession,
        url: str,
        *,
        on_notification: Callable[[dict[str, Any]], None],
        on_revocation: Callable[[dict[str, Any]], None] | None = None,
        on_moved: Callable[[str], None] | None = None,
        connect_timeout: float = 15.0,
        welcome_timeout: float = 10.0,
        dedupe: int = 500,
    ) -> None:
        self.http = http
        self.url = url
        self.on_notification = on_notification
        self.on_revocation = on_revocation
        self.on_moved = on_moved
        self.connect_timeout = connect_timeout
        self.errors = ErrorTranslator("the EventSub WebSocket", timeout=connect_timeout)
        self.welcome_timeout = welcome_timeout
        self._queue: asyncio.Queue[tuple[str, Any, Any]] = asyncio.Queue()
        self._current: _Socket | None = None
        self._sockets: set[_Socket] = set()
        self._handover: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[Any]] = set()
        self._seen: deque[str] = deque(maxlen=dedupe)
        self._seen_set: set[str] = set()
        self.reconnects = 0  # session_reconnect hand-overs completed

    @property
    def session_id(self) -> str | None:
        return self._current.session_id if self._current else None

    @property
    def keepalive(self) -> float | None:
        return self._current.keepalive if self._current else None

    @staticmethod
    def grace(keepalive: float) -> float:
        """Slack past the keepalive timeout before the connection is declared dead."""
        return max(1.0, keepalive * 0.25)

    # -- connecting ------------------------------------------------------------

    async def connect(self) -> str:
        """Open the first connection and wait for its welcome. Returns the session id."""
        self._current = await self._open(self.url)
        return self._current.session_id

    async def _open(self, url: str) -> _Socket:
        try:
            async with asyncio.timeout(self.connect_timeout):
                ws = await self.http.ws_connect(url, autoping=True, heartbeat=None)
        except Exception as exc:
            error = self.errors.translate(exc, on_status=_refused)
            if isinstance(error, ProviderError):
                error.provider = PROVIDER
            raise error from None
        try:
            welcome = await self._first_message(ws)
        except BaseException:
            await ws.close()
            raise
        session = (welcome.get("payload") or {}).get("session") or {}
        session_id = session.get("id")
        if not session_id:
            await ws.close()
            raise BadOutputError("EventSub welcome without a session id", provider=PROVIDER)
        keepalive = float(session.get("keepalive_timeout_seconds") or 10)
        sock = _Socket(ws, str(session_id), keepalive)
        sock.reader = asyncio.create_task(self._read(sock), name=f"eventsub-read-{session_id}")
        self._sockets.add(sock)
        log.debug("twitch: EventSub session %s welcomed (keepalive %gs)", session_id, keepalive)
        return sock

    async def _first_message(self, ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self.welcome_timeout):
                message = await ws.receive()
        except TimeoutError:
            raise ProviderTimeoutError(
                "no welcome from the EventSub WebSocket", provider=PROVIDER
            ) from None
        if message.type != aiohttp.WSMsgType.TEXT:
            raise ConnectionLost(
                f"EventSub WebSocket {_close_text(ws.close_code)} before its welcome",
                code=ws.close_code,
            )
        data = _decode(message.data)
        if data is None or _type(data) != "session_welcome":
            raise BadOutputError(
                "the EventSub WebSocket did not start with a welcome", provider=PROVIDER
            )
        return data

    async def _read(self, sock: _Socket) -> None:
        """Feed one connection's messages into the session's queue, then its end."""
        try:
            async for message in sock.ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    data = _decode(message.data)
                    if data is None:
                        log.warning("twitch: ignored a malformed EventSub message")
                        continue
                    await self._queue.put(("message", sock, data))
                elif message.type == aiohttp.WSMsgType.ERROR:
                    break
        except Exception:  # a broken transport ends this connection like a close
            log.debug("twitch: EventSub read failed", exc_info=True)
        finally:
            await self._queue.put(("closed", sock, sock.ws.close_code))

    # -- running ---------------------------------------------------------------

    async def run(self) -> None:
        """Dispatch messages until the connection is lost; always raises."""
        if self._current is None:
            raise RuntimeError("connect() first")
        while True:
            current = self._current
            wait = current.deadline(self.grace(current.keepalive)) - time.monotonic()
            try:
                async with asyncio.timeout(max(0.0, wait)):
                    kind, sock, data = await self._queue.get()
            except TimeoutError:
                raise KeepaliveTimeout(
                    f"no keepalive from Twitch for {current.keepalive:g}s", provider=PROVIDER
                ) from None
            if kind == "closed":
                if sock is self._current:
                    raise ConnectionLost(f"EventSub WebSocket {_close_text(data)}", code=data)
                self._sockets.discard(sock)
                continue  # an old connection after a hand-over, or a failed new one
            if kind == "moved":
                self._switch(sock)
                continue
            if kind == "handover_failed":
                # Twitch closes the old connection after its grace time; that loss
                # is then handled like any other (reconnect and subscribe again).
                log.warning(
                    "twitch: EventSub reconnect failed (%s); keeping the old connection", data
                )
                continue
            sock.last_seen = time.monotonic()
            self._dispatch(sock, data)

    def _dispatch(self, sock: _Socket, data: dict[str, Any]) -> None:
        message_type = _type(data)
        if message_type == "session_keepalive":
            return
        if message_type in ("notification", "revocation"):
            message_id = str((data.get("metadata") or {}).get("message_id") or "")
            if message_id:
                if message_id in self._seen_set:
                    log.debug("twitch: dropped duplicate EventSub message %s", message_id)
                    return
                if len(self._seen) == self._seen.maxlen:
                    self._seen_set.discard(self._seen[0])
                self._seen.append(message_id)
                self._seen_set.add(message_id)
            callback = (
                self.on_notification if message_type == "notification" else self.on_revocation
            )
            if callback is not None:
                try:
                    callback(data)
                except Exception:
                    log.exception("twitch: EventSub %s handler failed", message_type)
            return
        if message_type == "session_reconnect":
            if sock is not self._current:
                return
            session = (data.get("payload") or {}).get("session") or {}
            url = session.get("reconnect_url")
            if not url:
                log.warning("twitch: session_reconnect without a reconnect_url; ignored")
                return
            if self._handover is not None and not self._handover.done():
                return
            log.info("twitch: Twitch asked to move the EventSub session; reconnecting")
            self._handover = asyncio.create_task(self._move(url), name="eventsub-handover")
            return
        if message_type == "session_welcome":
            return  # only expected first, and read there
        log.debug("twitch: ignored EventSub message of type %r", message_type)

    async def _move(self, url: str) -> None:
        try:
            new = await self._open(url)
        except asyncio.CancelledError:
            raise
        except ProviderError as exc:
            await self._queue.put(("handover_failed", None, exc.message))
            return
        except Exception as exc:
            await self._queue.put(("handover_failed", None, type(exc).__name__))
            return
        await self._queue.put(("moved", new, None))

    def _switch(self, new: _Socket) -> None:
        old, self._current = self._current, new
        self.reconnects += 1
        log.info("twitch: EventSub session moved to a new connection (%s)", new.session_id)
        if self.on_moved is not None:
            try:
                self.on_moved(new.session_id)
            except Exception:
                log.exception("twitch: EventSub on_moved handler failed")
        if old is not None:
            # The new connection is welcomed: now the old one may go. Its reader's
            # remaining messages (already queued) are still dispatched.
            task = asyncio.create_task(old.ws.close(), name="eventsub-close-old")
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        if self._handover is not None:
            self._handover.cancel()
            with contextlib.suppress(BaseException):
                await self._handover
        for sock in list(self._sockets):
            # A half-dead connection would make close() wait for a close frame that
            # never comes: give it a moment, not the default 10 s.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await sock.ws.close()
            if sock.reader is not None:
                sock.reader.cancel()
                with contextlib.suppress(BaseException):
                    await sock.reader
        for task in list(self._closing):
            task.cancel()
        self._sockets.clear()
        self._current = None


def _decode(text: str) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _type(data: dict[str, Any]) -> str | None:
    return (data.get("metadata") or {}).get("message_type")
