"""The gateway: WebSocket sessions, sequence numbers, resume buffer, dispatch.

One ``GatewayConnection`` is one WebSocket; one ``GatewaySession`` is what an
IDENTIFY creates and a RESUME re-attaches to a new connection. Every dispatched
event gets the session's next sequence number and is kept in a bounded buffer,
so a client that RESUMEs receives what it missed, like on the real gateway.

Sharding works as on Discord: each IDENTIFY names ``[shard_id, num_shards]`` (the
count must be the bot's, else close 4010; none from a sharded bot: 4011), a
server's events go only to the session of its shard (``(guild_id >> 22) %
num_shards``; DMs to shard 0), and an IDENTIFY that comes less than
``identify_interval`` seconds after the last one of its bucket (``shard_id %
max_concurrency``) is refused with op 9.

Outgoing frames go through one queue and one writer task per connection: that
keeps them in sequence order even though events are dispatched from plain
(synchronous) helper methods as well as from request handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from aiohttp import WSMsgType, web

log = logging.getLogger(__name__)

# Gateway opcodes.
DISPATCH = 0
HEARTBEAT = 1
IDENTIFY = 2
PRESENCE_UPDATE = 3
VOICE_STATE_UPDATE = 4
RESUME = 6
RECONNECT = 7
REQUEST_GUILD_MEMBERS = 8
INVALID_SESSION = 9
HELLO = 10
HEARTBEAT_ACK = 11

# Intents.
GUILDS = 1 << 0
GUILD_MEMBERS = 1 << 1
GUILD_VOICE_STATES = 1 << 7
GUILD_PRESENCES = 1 << 8
GUILD_MESSAGES = 1 << 9
GUILD_MESSAGE_REACTIONS = 1 << 10
GUILD_MESSAGE_TYPING = 1 << 11
DIRECT_MESSAGES = 1 << 12
DIRECT_MESSAGE_REACTIONS = 1 << 13
DIRECT_MESSAGE_TYPING = 1 << 14
MESSAGE_CONTENT = 1 << 15
PRIVILEGED_INTENTS = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT

# Close codes (https://discord.com/developers/docs/topics/opcodes-and-status-codes).
CLOSE_UNKNOWN_ERROR = 4000
CLOSE_UNKNOWN_OPCODE = 4001
CLOSE_DECODE_ERROR = 4002
CLOSE_NOT_AUTHENTICATED = 4003
CLOSE_AUTHENTICATION_FAILED = 4004
CLOSE_ALREADY_AUTHENTICATED = 4005
CLOSE_SESSION_TIMED_OUT = 4009
CLOSE_INVALID_SHARD = 4010
CLOSE_SHARDING_REQUIRED = 4011
CLOSE_INVALID_INTENTS = 4013
CLOSE_DISALLOWED_INTENTS = 4014

Payload = dict[str, Any]
PayloadSource = Payload | Callable[["GatewaySession"], Payload | None]


class GatewayBackend(Protocol):
    """What the gateway needs from the server (implemented by ``FakeDiscord``)."""

    def check_token(self, token: Any) -> bool: ...

    def allowed_intents(self) -> int: ...

    def ready_payload(self, session: GatewaySession) -> Payload: ...

    def initial_guild_creates(self, session: GatewaySession) -> list[Payload]: ...

    def on_voice_state_update(self, session: GatewaySession, data: Payload) -> None: ...

    def member_chunks(self, session: GatewaySession, data: Payload) -> list[Payload]: ...


class IdentifyRecord(NamedTuple):
    """One IDENTIFY that passed the token, intents and shard checks (``server.identifies``)."""

    shard: tuple[int, int]  # [shard_id, num_shards] as the client sent it
    bucket: int  # shard_id % max_concurrency: the rate-limit key
    at: float  # time.monotonic() when it arrived
    refused: bool  # answered with op 9: too soon after another in its bucket


class GatewayEvent(NamedTuple):
    """One dispatched event, for debugging (``server.gateway_events``)."""

    session_id: str
    seq: int
    name: str


class GatewayConnection:
    """One WebSocket plus its ordered writer."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request) -> None:
        self.ws = ws
        self.request = request
        self.session: GatewaySession | None = None
        self.identified = False
        self._queue: asyncio.Queue[str | bytes | tuple[int, str]] = asyncio.Queue()
        self._writer = asyncio.create_task(self._write_loop(), name="fake-discord-gw-writer")

    @property
    def open(self) -> bool:
        return not self.ws.closed and not self._writer.done()

    def send(self, frame: str | bytes) -> None:
        """Queue a text frame, or a binary one (bytes: the voice gateway's DAVE frames)."""
        if self.open:
            self._queue.put_nowait(frame)

    def send_op(self, op: int, data: Any) -> None:
        self.send(json.dumps({"op": op, "d": data, "s": None, "t": None}))

    def close_after_flush(self, code: int, reason: str = "") -> None:
        """Close with ``code`` once everything queued so far has been written."""
        if self.open:
            self._queue.put_nowait((code, reason))

    async def flush(self, timeout: float = 5.0) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout)

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (an "abnormal" closure)."""
        transport = self.request.transport
        if transport is not None:
            transport.abort()
        self._writer.cancel()

    async def stop(self) -> None:
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._writer

    async def _write_loop(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                if isinstance(item, tuple):
                    code, reason = item
                    await self.ws.close(code=code, message=reason.encode())
                    self._drain()
                    return
                if isinstance(item, bytes):
                    await self.ws.send_bytes(item)
                else:
                    await self.ws.send_str(item)
            except (ConnectionError, RuntimeError) as exc:
                # The peer went away: nothing more can be written on this socket.
                log.debug("gateway writer stopped: %r", exc)
                self._drain()
                return
            finally:
                self._queue.task_done()

    def _drain(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()
            self._queue.task_done()


@dataclass(eq=False)
class GatewaySession:
    session_id: str
    intents: int
    shard: tuple[int, int]
    buffer_size: int
    seq: int = 0
    connection: GatewayConnection | None = field(default=None, repr=False)
    ended: bool = False
    presence: Payload | None = None
    buffer: deque[tuple[int, str]] = field(init=False, repr=False)
    log: list[GatewayEvent] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.buffer = deque(maxlen=self.buffer_size)

    def handles_guild(self, guild_id: int | None) -> bool:
        """Shard routing: ``(guild_id >> 22) % num_shards``; DMs go to shard 0."""
        shard_id, num_shards = self.shard
        if guild_id is None:
            return shard_id == 0
        return (guild_id >> 22) % num_shards == shard_id

    def push(self, event: str, data: Payload) -> None:
        self.seq += 1
        frame = json.dumps({"op": DISPATCH, "t": event, "s": self.seq, "d": data})
        self.buffer.append((self.seq, frame))
        if self.log is not None:
            self.log.append(GatewayEvent(self.session_id, self.seq, event))
        if self.connection is not None:
            self.connection.send(frame)

    def replay_after(self, seq: int) -> list[str] | None:
        """Frames after ``seq``, or None when the buffer no longer reaches back."""
        if seq > self.seq:
            return None
        missed = [frame for s, frame in self.buffer if s > seq]
        if self.seq - seq != len(missed):
            return None
        return missed


class Gateway:
    def __init__(
        self,
        backend: GatewayBackend,
        *,
        heartbeat_interval_ms: int = 41250,
        buffer_size: int = 2000,
        shard_count: int = 1,
        max_concurrency: int = 1,
        identify_interval: float | None = None,
    ) -> None:
        self.backend = backend
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.buffer_size = buffer_size
        # Sharding: IDENTIFY must name [shard_id, shard_count] of exactly this count.
        self.shard_count = shard_count
        # Discord allows one IDENTIFY per bucket (shard_id % max_concurrency) every
        # identify_interval seconds (5 on Discord) and answers a faster one with op 9;
        # None: not enforced.
        self.max_concurrency = max_concurrency
        self.identify_interval = identify_interval
        self.identifies: list[IdentifyRecord] = []
        self._bucket_last: dict[int, float] = {}
        self.url = ""  # set by the server once it knows its port
        self.sessions: dict[str, GatewaySession] = {}
        self.connections: set[GatewayConnection] = set()
        self.identify_count = 0
        self.resume_count = 0
        self.events: list[GatewayEvent] = []
        self.internal_errors: list[str] = []  # the server shares its list here
        self.changed: Callable[[], None] = lambda: None  # hook to wake server waiters
        # Fault injection: answer this many WebSocket upgrades with HTTP 503.
        self.refuse_connections = 0

    # -- dispatch ---------------------------------------------------------

    @property
    def live_sessions(self) -> list[GatewaySession]:
        return [s for s in self.sessions.values() if not s.ended]

    def dispatch(
        self, event: str, data: PayloadSource, *, intent: int = 0, guild_id: int | None = None
    ) -> None:
        """Send ``event`` to every live session that asked for it.

        ``data`` may be a callable building the payload per session (for
        intent-dependent payloads); returning None skips that session.
        """
        for session in self.live_sessions:
            if intent and not session.intents & intent:
                continue
            if not session.handles_guild(guild_id):
                continue
            payload = data(session) if callable(data) else data
            if payload is not None:
                session.push(event, payload)

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait until queued frames were written to every open socket."""
        await asyncio.gather(*(c.flush(timeout) for c in list(self.connections) if c.open))

    # -- fault injection --------------------------------------------------

    async def drop(
        self, *, resumable: bool = True, code: int | None = None, abnormal: bool = False
    ) -> None:
        """Close every bot connection; sessions stay resumable unless told otherwise."""
        for conn in list(self.connections):
            if not resumable and conn.session is not None:
                self._end_session(conn.session)
            if abnormal:
                conn.abort()
            else:
                close_code = code or (CLOSE_UNKNOWN_ERROR if resumable else CLOSE_SESSION_TIMED_OUT)
                conn.close_after_flush(close_code, "dropped by test")
            self._detach(conn)
        await self.flush()

    def request_reconnect(self) -> None:
        """Send op 7 RECONNECT: clients close and RESUME."""
        for conn in list(self.connections):
            conn.send_op(RECONNECT, None)

    def invalidate_sessions(self, *, resumable: bool = False) -> None:
        """Send op 9 INVALID_SESSION to every connection."""
        for conn in list(self.connections):
            if not resumable and conn.session is not None:
                self._end_session(conn.session)
            conn.send_op(INVALID_SESSION, resumable)

    async def close(self) -> None:
        for conn in list(self.connections):
            conn.close_after_flush(1001, "server shutting down")
        await self.flush(timeout=2.0)
        for conn in list(self.connections):
            await conn.stop()
            with contextlib.suppress(Exception):
                await conn.ws.close()
        self.connections.clear()

    # -- connection handling ----------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.refuse_connections > 0:
            # Like a gateway that is restarting behind its proxy: no upgrade.
            self.refuse_connections -= 1
            self.changed()
            return web.Response(status=503, text="gateway unavailable")
        # timeout: how long a close waits for the peer's close frame; keep it short
        # so dropping a dead client does not stall the test.
        ws = web.WebSocketResponse(max_msg_size=0, timeout=2.0)
        await ws.prepare(request)
        conn = GatewayConnection(ws, request)
        self.connections.add(conn)
        trace = [f'["fake-discord-gateway",{{"micros":{int(time.time() * 1e6) % 1000}}}]']
        conn.send_op(HELLO, {"heartbeat_interval": self.heartbeat_interval_ms, "_trace": trace})
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    self._safe_on_frame(conn, msg.data)
                elif msg.type is WSMsgType.BINARY:
                    conn.close_after_flush(CLOSE_DECODE_ERROR, "Error while decoding payload.")
                else:
                    break
        finally:
            self._on_disconnect(conn, ws.close_code)
            await conn.stop()
        return ws

    def _on_disconnect(self, conn: GatewayConnection, close_code: int | None) -> None:
        self.connections.discard(conn)
        session = conn.session
        if session is not None and session.connection is conn:
            # A client that closes with 1000/1001 ends its session (Discord does the
            # same); any other closure leaves it resumable. Note that discord.py's
            # Client.close() ends up sending 4000, so its sessions stay resumable.
            if close_code in (1000, 1001):
                self._end_session(session)
            self._detach(conn)
        self.changed()

    def _detach(self, conn: GatewayConnection) -> None:
        if conn.session is not None and conn.session.connection is conn:
            conn.session.connection = None
        conn.session = None

    def _end_session(self, session: GatewaySession) -> None:
        session.ended = True
        self.sessions.pop(session.session_id, None)

    def _safe_on_frame(self, conn: GatewayConnection, raw: str) -> None:
        try:
            self._on_frame(conn, raw)
        except Exception as exc:
            # A bug in the fake: keep the server up, close this socket, make it visible.
            log.exception("fake gateway failed on %s", raw[:200])
            self.internal_errors.append(f"gateway frame {raw[:200]}: {exc!r}")
            conn.close_after_flush(CLOSE_UNKNOWN_ERROR, "Internal error in the fake gateway.")

    def _on_frame(self, conn: GatewayConnection, raw: str) -> None:
        try:
            msg = json.loads(raw)
            op = msg["op"]
            data = msg.get("d")
        except (ValueError, KeyError, TypeError):
            conn.close_after_flush(CLOSE_DECODE_ERROR, "Error while decoding payload.")
            return
        if op == HEARTBEAT:
            conn.send_op(HEARTBEAT_ACK, None)
        elif op == IDENTIFY:
            self._identify(conn, data or {})
        elif op == RESUME:
            self._resume(conn, data or {})
        elif conn.session is None:
            conn.close_after_flush(CLOSE_NOT_AUTHENTICATED, "Not authenticated.")
        elif op == PRESENCE_UPDATE:
            conn.session.presence = data
        elif op == VOICE_STATE_UPDATE:
            self.backend.on_voice_state_update(conn.session, data or {})
        elif op == REQUEST_GUILD_MEMBERS:
            for chunk in self.backend.member_chunks(conn.session, data or {}):
                conn.session.push("GUILD_MEMBERS_CHUNK", chunk)
        else:
            conn.close_after_flush(CLOSE_UNKNOWN_OPCODE, "Unknown opcode.")
        self.changed()

    def _identify(self, conn: GatewayConnection, data: Payload) -> None:
        self.identify_count += 1
        if conn.session is not None:
            conn.close_after_flush(CLOSE_ALREADY_AUTHENTICATED, "Already authenticated.")
            return
        if not self.backend.check_token(data.get("token")):
            conn.close_after_flush(CLOSE_AUTHENTICATION_FAILED, "Authentication failed.")
            return
        intents = data.get("intents")
        if not isinstance(intents, int) or intents < 0:
            conn.close_after_flush(CLOSE_INVALID_INTENTS, "Invalid intent(s).")
            return
        if intents & PRIVILEGED_INTENTS & ~self.backend.allowed_intents():
            conn.close_after_flush(CLOSE_DISALLOWED_INTENTS, "Disallowed intent(s).")
            return
        shard = self._check_shard(conn, data.get("shard"))
        if shard is None or self._too_soon(conn, shard):
            return
        session = GatewaySession(
            session_id=secrets.token_hex(16),
            intents=intents,
            shard=shard,
            buffer_size=self.buffer_size,
            presence=data.get("presence"),
            log=self.events,
        )
        self.sessions[session.session_id] = session
        session.connection = conn
        conn.session = session
        session.push("READY", self.backend.ready_payload(session))
        if session.intents & GUILDS:
            for guild in self.backend.initial_guild_creates(session):
                session.push("GUILD_CREATE", guild)

    def _check_shard(self, conn: GatewayConnection, shard: Any) -> tuple[int, int] | None:
        """The IDENTIFY's ``[shard_id, num_shards]``, or None once the socket is being
        closed: 4011 when a sharded bot sent none, 4010 for a malformed pair or one
        whose count is not the bot's shard count."""
        if shard is None:
            if self.shard_count > 1:
                conn.close_after_flush(CLOSE_SHARDING_REQUIRED, "Sharding required.")
                return None
            return (0, 1)
        valid = (
            isinstance(shard, list)
            and len(shard) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) for x in shard)
            and shard[1] == self.shard_count
            and 0 <= shard[0] < shard[1]
        )
        if not valid:
            conn.close_after_flush(CLOSE_INVALID_SHARD, "Invalid shard.")
            return None
        return (shard[0], shard[1])

    def _too_soon(self, conn: GatewayConnection, shard: tuple[int, int]) -> bool:
        """Refuse (op 9, not resumable) an IDENTIFY that comes within the bucket's
        window of the last accepted one, as Discord does; record every IDENTIFY."""
        bucket = shard[0] % max(1, self.max_concurrency)
        now = time.monotonic()
        last = self._bucket_last.get(bucket)
        refused = (
            self.identify_interval is not None
            and last is not None
            and now - last < self.identify_interval
        )
        self.identifies.append(IdentifyRecord(shard, bucket, now, refused))
        if refused:
            log.info(
                "refused IDENTIFY of shard %s: %.2fs after the last one in bucket %s",
                list(shard),
                now - (last or now),
                bucket,
            )
            conn.send_op(INVALID_SESSION, False)
            return True
        self._bucket_last[bucket] = now
        return False

    def _resume(self, conn: GatewayConnection, data: Payload) -> None:
        if not self.backend.check_token(data.get("token")):
            conn.close_after_flush(CLOSE_AUTHENTICATION_FAILED, "Authentication failed.")
            return
        session = self.sessions.get(str(data.get("session_id")))
        seq = data.get("seq")
        missed = session.replay_after(int(seq)) if session and isinstance(seq, int) else None
        if session is None or missed is None:
            conn.send_op(INVALID_SESSION, False)
            return
        self.resume_count += 1
        old = session.connection
        if old is not None and old is not conn:
            # The old socket is still around (e.g. half-open): it loses the session.
            self._detach(old)
            old.close_after_flush(CLOSE_UNKNOWN_ERROR, "Session resumed elsewhere.")
        session.connection = conn
        conn.session = session
        for frame in missed:
            conn.send(frame)
        session.push("RESUMED", {"_trace": ["fake-discord-gateway"]})
