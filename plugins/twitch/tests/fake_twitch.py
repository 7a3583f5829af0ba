"""A loopback Twitch for tests: EventSub WebSocket, Helix and OAuth on 127.0.0.1.

:class:`FakeTwitch` speaks the documented wire formats closely enough for
twitchAPI and this plugin (or any EventSub WebSocket client) to run against it:

- ``GET /ws`` (``eventsub_url``): the EventSub WebSocket. Sends
  ``session_welcome`` (session id, ``keepalive_timeout_seconds``), then
  ``session_keepalive`` after every quiet ``keepalive`` seconds,
  ``notification`` messages for the session's subscriptions,
  ``session_reconnect`` with a ``reconnect_url`` (a second connection that takes
  the subscriptions over; the old one is closed only after the new welcome) and
  ``revocation``. Closes with 4003 when no subscription was made within
  ``unused_timeout`` and with 4001 when the client sends anything.
- Helix (``api_base``, ``/helix/``): ``POST/GET/DELETE /eventsub/subscriptions``
  (WebSocket transport only; the ``session_id`` must be a live, welcomed session;
  scopes checked per type; 409 on duplicates), ``GET /users`` and
  ``POST /chat/messages`` (echoed back as a ``channel.chat.message`` event, as
  Twitch does), ``GET /streams`` (the channels made live with
  :meth:`FakeTwitch.go_live`) and ``GET /channels`` (title and category, live or
  not). Requests need ``Client-Id`` and ``Authorization: Bearer``.
- OAuth (``auth_base``, ``/oauth2/``): ``GET /validate`` and the refresh grant
  ``POST /token``.

Errors use Helix's JSON shape (``{"error", "status", "message"}``); any route can
be told to fail (:meth:`FakeTwitch.fail_next`, with ``Ratelimit-Reset`` and
``Retry-After`` for 429). Every HTTP request is recorded. ::

    async with FakeTwitch() as twitch:
        twitch.add_user("streamer")
        twitch.add_token("tok", "streamer")
        env = twitch.env("tok", "streamer")      # TWITCH_* variables pointing here
        ...
        await twitch.wait_for_subscriptions()
        await twitch.send_event("channel.raid", raid_event(twitch.user("streamer"), "alice", 42))
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import itertools
import json
import time
import uuid
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from multidict import CIMultiDict

from hark.testing.loopback import FailureQueue, LoopbackServer, unused_port

__all__ = [
    "ALL_SCOPES",
    "FakeSession",
    "FakeTwitch",
    "FakeUser",
    "RecordedRequest",
    "chat_event",
    "cheer_event",
    "closed_port",
    "follow_event",
    "gift_event",
    "raid_event",
    "resub_event",
    "subscribe_event",
]

# type -> (version, the scope a user token needs)
SUBSCRIPTION_TYPES: dict[str, tuple[str, str | None]] = {
    "channel.chat.message": ("1", "user:read:chat"),
    "channel.follow": ("2", "moderator:read:followers"),
    "channel.subscribe": ("1", "channel:read:subscriptions"),
    "channel.subscription.message": ("1", "channel:read:subscriptions"),
    "channel.subscription.gift": ("1", "channel:read:subscriptions"),
    "channel.cheer": ("1", "bits:read"),
    "channel.raid": ("1", None),
}
ALL_SCOPES: tuple[str, ...] = (
    "user:read:chat",
    "user:write:chat",
    "moderator:read:followers",
    "channel:read:subscriptions",
    "bits:read",
)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


def closed_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    return unused_port()


@dataclass(slots=True)
class FakeUser:
    id: str
    login: str
    display_name: str

    def as_helix(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "login": self.login,
            "display_name": self.display_name,
            "type": "",
            "broadcaster_type": "affiliate",
            "description": "",
            "profile_image_url": "",
            "offline_image_url": "",
            "view_count": 0,
            "created_at": "2020-01-01T00:00:00Z",
        }


@dataclass(slots=True)
class FakeToken:
    token: str
    user: FakeUser
    scopes: list[str]
    client_id: str
    expires_in: int = 14_400
    refresh: str | None = None
    valid: bool = True


@dataclass(slots=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: CIMultiDict[str]
    body: Any = None


@dataclass(eq=False)
class FakeSession:
    """One WebSocket connection (a session id per connection)."""

    id: str
    ws: web.WebSocketResponse
    keepalive: int
    connected_at: str = field(default_factory=_now)
    welcomed: bool = False
    alive: bool = True
    last_sent: float = field(default_factory=time.monotonic)
    sent: list[dict[str, Any]] = field(default_factory=list)
    moved_to: str | None = None  # the session that took over after a reconnect
    close_code: int | None = None
    transport: asyncio.BaseTransport | None = None


class FakeTwitch(LoopbackServer):
    server_name = "the fake Twitch"
    shutdown_timeout = 0.5

    def __init__(
        self,
        *,
        client_id: str = "fake-client-id",
        client_secret: str = "fake-client-secret",
        keepalive: int = 10,
        unused_timeout: float = 10.0,
        reconnect_grace: float = 30.0,
    ) -> None:
        super().__init__()
        self.client_id = client_id
        self.client_secret = client_secret
        self.keepalive = keepalive
        self.unused_timeout = unused_timeout
        self.reconnect_grace = reconnect_grace
        self.users: dict[str, FakeUser] = {}
        self.tokens: dict[str, FakeToken] = {}
        self.sessions: dict[str, FakeSession] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.requests: list[RecordedRequest] = []
        self.chat_messages: list[dict[str, Any]] = []
        self.connections = 0  # WebSocket connections accepted
        self.refuse_websocket = False  # answer the WebSocket handshake with 503
        self.keepalives_paused = False
        self.echo_chat = True  # sent chat messages come back as channel.chat.message
        # Subscription types to refuse with this status, whatever the token (scripted).
        self.refuse_types: dict[str, int] = {}
        # channel login -> logins of its moderators (the broadcaster always is one)
        self.moderators: dict[str, set[str]] = {}
        # channel login -> its live stream (GET /streams), and its channel information
        # (GET /channels: the title and category stay when the stream ends).
        self.streams: dict[str, dict[str, Any]] = {}
        self.channel_info: dict[str, dict[str, str]] = {}
        self._ids = itertools.count(1000)
        self._failures = FailureQueue()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._changed = asyncio.Condition()

    # -- lifecycle (start, ``async with``, ``port``, ``started``: LoopbackServer) --

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/ws", self._ws)
        app.router.add_get("/oauth2/validate", self._validate)
        app.router.add_post("/oauth2/token", self._token)
        app.router.add_post("/helix/eventsub/subscriptions", self._create_subscription)
        app.router.add_get("/helix/eventsub/subscriptions", self._list_subscriptions)
        app.router.add_delete("/helix/eventsub/subscriptions", self._delete_subscription)
        app.router.add_get("/helix/users", self._users)
        app.router.add_post("/helix/chat/messages", self._chat_message)
        app.router.add_get("/helix/streams", self._streams)
        app.router.add_get("/helix/channels", self._channels)

    async def close(self) -> None:
        for session in list(self.sessions.values()):
            if session.alive:
                with contextlib.suppress(Exception):
                    await session.ws.close(code=1001)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        await super().close()

    @property
    def base_url(self) -> str:
        return self.url

    @property
    def eventsub_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws"

    @property
    def api_base(self) -> str:
        return f"{self.base_url}/helix/"

    @property
    def auth_base(self) -> str:
        return f"{self.base_url}/oauth2/"

    def env(self, token: str, channel: str, **extra: str) -> dict[str, str]:
        """The plugin's environment variables, pointed at this server."""
        values = {
            "TWITCH_CLIENT_ID": self.client_id,
            "TWITCH_ACCESS_TOKEN": token,
            "TWITCH_CHANNEL": channel,
            "TWITCH_EVENTSUB_URL": self.eventsub_url,
            "TWITCH_API_BASE": self.api_base,
            "TWITCH_AUTH_BASE": self.auth_base,
        }
        values.update(extra)
        return values

    # -- world set-up ----------------------------------------------------------

    def add_user(self, login: str, display_name: str | None = None) -> FakeUser:
        user = FakeUser(str(next(self._ids)), login.lower(), display_name or login)
        self.users[user.login] = user
        return user

    def add_moderator(self, channel: str, login: str) -> None:
        self.moderators.setdefault(channel.lower(), set()).add(login.lower())

    def user(self, login: str) -> FakeUser:
        return self.users[login.lower()]

    def add_token(
        self,
        token: str,
        login: str,
        scopes: Iterable[str] = ALL_SCOPES,
        *,
        refresh: str | None = None,
        client_id: str | None = None,
        expires_in: int = 14_400,
    ) -> FakeToken:
        user = self.users.get(login.lower()) or self.add_user(login)
        record = FakeToken(
            token, user, list(scopes), client_id or self.client_id, expires_in, refresh
        )
        self.tokens[token] = record
        return record

    def set_channel(self, login: str, *, title: str = "", game: str = "") -> None:
        """The channel's title and category (what ``GET /channels`` says)."""
        self.channel_info[login.lower()] = {"title": title, "game_name": game}

    def go_live(
        self,
        login: str,
        *,
        title: str = "",
        game: str = "",
        viewers: int = 0,
        started_at: datetime.datetime | None = None,
        language: str = "en",
    ) -> dict[str, Any]:
        """Start a stream on ``login``'s channel (its title and category become the
        channel's, as on Twitch)."""
        user = self.user(login)
        started = started_at or datetime.datetime.now(datetime.UTC)
        game_id = str(zlib.crc32(game.encode())) if game else ""
        stream = {
            "id": str(next(self._ids)),
            "user_id": user.id,
            "user_login": user.login,
            "user_name": user.display_name,
            "game_id": game_id,
            "game_name": game,
            "type": "live",
            "title": title,
            "tags": [],
            "viewer_count": viewers,
            "started_at": started.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "language": language,
            "thumbnail_url": "",
            "tag_ids": [],
            "is_mature": False,
        }
        self.streams[user.login] = stream
        self.set_channel(user.login, title=title, game=game)
        return stream

    def go_offline(self, login: str) -> None:
        self.streams.pop(login.lower(), None)

    def expire_token(self, token: str) -> None:
        self.tokens[token].valid = False

    def fail_next(
        self,
        method: str,
        path: str,
        status: int,
        *,
        times: int = 1,
        retry_after: float | None = None,
        message: str = "scripted failure",
    ) -> None:
        """Answer the next ``times`` requests to ``method path`` (e.g. ``"POST",
        "/helix/eventsub/subscriptions"``) with ``status``."""
        self._failures.add(
            status,
            times=times,
            keys=[(method.upper(), path)],
            retry_after=retry_after,
            message=message,
        )

    # -- what happened ---------------------------------------------------------

    def live_sessions(self) -> list[FakeSession]:
        return [s for s in self.sessions.values() if s.alive and s.welcomed]

    def active(self, type_: str | None = None) -> list[dict[str, Any]]:
        """Enabled subscriptions on live sessions (of ``type_``, if given)."""
        return [
            sub
            for sub in self.subscriptions.values()
            if sub["status"] == "enabled"
            and (type_ is None or sub["type"] == type_)
            and self._session_of(sub) is not None
        ]

    def requests_to(self, method: str, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method.upper() and r.path == path]

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        """Wait until ``predicate()`` is true (re-checked on every change)."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)

    async def wait_for_subscriptions(
        self, types: Iterable[str] | None = None, timeout: float = 10.0
    ) -> None:
        """Wait until every type in ``types`` (default: all seven) is subscribed live."""
        wanted = set(types if types is not None else SUBSCRIPTION_TYPES)
        await self.wait_for(lambda: wanted <= {s["type"] for s in self.active()}, timeout)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- EventSub messages -----------------------------------------------------

    @staticmethod
    def _metadata(message_type: str, sub: dict[str, Any] | None = None) -> dict[str, Any]:
        metadata = {
            "message_id": str(uuid.uuid4()),
            "message_type": message_type,
            "message_timestamp": _now(),
        }
        if sub is not None:
            metadata["subscription_type"] = sub["type"]
            metadata["subscription_version"] = sub["version"]
        return metadata

    async def _send(self, session: FakeSession, message: dict[str, Any]) -> bool:
        if not session.alive or session.ws.closed:
            return False
        try:
            await session.ws.send_str(json.dumps(message))
        except (ConnectionError, RuntimeError):
            return False
        session.last_sent = time.monotonic()
        session.sent.append(message)
        return True

    def _session_of(self, sub: dict[str, Any]) -> FakeSession | None:
        session = self.sessions.get(sub["transport"]["session_id"])
        return session if session is not None and session.alive else None

    async def send_event(
        self, type_: str, event: dict[str, Any], *, duplicate: bool = False
    ) -> int:
        """Deliver ``event`` to every live subscription of ``type_``; returns how many got it.
        ``duplicate`` sends each notification twice with the same message id."""
        delivered = 0
        for sub in self.active(type_):
            session = self._session_of(sub)
            assert session is not None
            message = {
                "metadata": self._metadata("notification", sub),
                "payload": {"subscription": dict(sub), "event": event},
            }
            if await self._send(session, message):
                delivered += 1
                if duplicate:
                    await self._send(session, message)
        return delivered

    async def send_reconnect(self, session: FakeSession | None = None) -> FakeSession:
        """Send ``session_reconnect`` (to the only live session by default)."""
        if session is None:
            (session,) = self.live_sessions()
        url = f"{self.eventsub_url}?reconnect={session.id}"
        await self._send(
            session,
            {
                "metadata": self._metadata("session_reconnect"),
                "payload": {
                    "session": {
                        "id": session.id,
                        "status": "reconnecting",
                        "keepalive_timeout_seconds": None,
                        "reconnect_url": url,
                        "connected_at": session.connected_at,
                        "recovery_url": None,
                    }
                },
            },
        )
        self._spawn(self._reconnect_deadline(session))
        return session

    async def _reconnect_deadline(self, session: FakeSession) -> None:
        await asyncio.sleep(self.reconnect_grace)
        if session.alive and session.moved_to is None:
            session.close_code = 4004
            await session.ws.close(code=4004, message=b"reconnect grace time expired")

    async def revoke(self, type_: str, status: str = "authorization_revoked") -> int:
        """Revoke every live subscription of ``type_`` with a ``revocation`` message."""
        count = 0
        for sub in self.active(type_):
            session = self._session_of(sub)
            sub["status"] = status
            assert session is not None
            message = {
                "metadata": self._metadata("revocation", sub),
                "payload": {"subscription": dict(sub)},
            }
            if await self._send(session, message):
                count += 1
        await self._notify()
        return count

    async def drop_connections(self, code: int | None = None) -> None:
        """Close every live WebSocket (with ``code``, or abruptly without a close frame)."""
        for session in self.live_sessions():
            session.close_code = code
            if code is None:
                if session.transport is not None:
                    session.transport.abort()
                session.alive = False
            else:
                await session.ws.close(code=code)
        await self._notify()

    def pause_keepalives(self) -> None:
        self.keepalives_paused = True

    def resume_keepalives(self) -> None:
        self.keepalives_paused = False

    # -- the WebSocket ---------------------------------------------------------

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        if self.refuse_websocket:
            return web.json_response({"error": "Service Unavailable"}, status=503)
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.connections += 1
        session = FakeSession(str(uuid.uuid4()), ws, self.keepalive, transport=request.transport)
        self.sessions[session.id] = session
        old = self.sessions.get(request.query.get("reconnect", ""))
        await self._send(
            session,
            {
                "metadata": self._metadata("session_welcome"),
                "payload": {
                    "session": {
                        "id": session.id,
                        "status": "connected",
                        "connected_at": session.connected_at,
                        "keepalive_timeout_seconds": session.keepalive,
                        "reconnect_url": None,
                        "recovery_url": None,
                    }
                },
            },
        )
        session.welcomed = True
        if old is not None and old.alive:
            # The subscriptions move to the new connection; the old one goes
            # only now, after the new welcome.
            for sub in self.subscriptions.values():
                if sub["transport"]["session_id"] == old.id:
                    sub["transport"] = {**sub["transport"], "session_id": session.id}
            old.moved_to = session.id
            self._spawn(self._close_later(old, 0.5))
        else:
            self._spawn(self._close_if_unused(session))
        await self._notify()
        keepalive = asyncio.create_task(self._keepalives(session))
        try:
            async for message in ws:
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    session.close_code = 4001
                    await ws.close(code=4001, message=b"client sent inbound traffic")
                    break
        finally:
            keepalive.cancel()
            session.alive = False
            if session.moved_to is None:
                for sub in self.subscriptions.values():
                    if sub["transport"]["session_id"] == session.id and sub["status"] == "enabled":
                        sub["status"] = "websocket_disconnected"
            await self._notify()
        return ws

    async def _close_later(self, session: FakeSession, delay: float) -> None:
        await asyncio.sleep(delay)
        if session.alive:
            await session.ws.close(code=1000)

    async def _close_if_unused(self, session: FakeSession) -> None:
        await asyncio.sleep(self.unused_timeout)
        if session.alive and not any(
            s["transport"]["session_id"] == session.id for s in self.subscriptions.values()
        ):
            session.close_code = 4003
            await session.ws.close(code=4003, message=b"connection unused")

    async def _keepalives(self, session: FakeSession) -> None:
        while session.alive:
            await asyncio.sleep(max(0.05, session.last_sent + session.keepalive - time.monotonic()))
            if (
                not self.keepalives_paused
                and time.monotonic() - session.last_sent >= session.keepalive
            ):
                await self._send(
                    session, {"metadata": self._metadata("session_keepalive"), "payload": {}}
                )

    # -- HTTP helpers ----------------------------------------------------------

    @staticmethod
    def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
        reasons = {
            400: "Bad Request",
            401: "Unauthorized",
            403: "Forbidden",
            404: "Not Found",
            409: "Conflict",
            429: "Too Many Requests",
            500: "Internal Server Error",
            503: "Service Unavailable",
        }
        return web.json_response(
            {"error": reasons.get(status, "Error"), "status": status, "message": message},
            status=status,
            headers=headers,
        )

    async def _record(self, request: web.Request) -> tuple[RecordedRequest, web.Response | None]:
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            if request.content_type == "application/json":
                with contextlib.suppress(ValueError):
                    body = json.loads(raw or b"null")
            elif request.content_type == "application/x-www-form-urlencoded":
                body = _form(raw)
            else:
                body = raw.decode(errors="replace")
        query: dict[str, list[str]] = {}
        for key, value in request.query.items():
            query.setdefault(key, []).append(value)
        record = RecordedRequest(
            request.method, request.path, query, CIMultiDict(request.headers), body
        )
        self.requests.append(record)
        await self._notify()
        failure = self._failures.take((request.method, request.path))
        if failure is None:
            return record, None
        headers = {}
        if failure.retry_after is not None:
            retry_after = float(failure.retry_after)
            headers["Retry-After"] = str(int(retry_after))
            headers["Ratelimit-Reset"] = str(int(time.time() + retry_after))
            headers["Ratelimit-Remaining"] = "0"
        return record, self._error(failure.status, failure.message or "", headers)

    def _auth(self, request: web.Request, *, scheme: str = "Bearer") -> FakeToken | web.Response:
        header = request.headers.get("Authorization", "")
        given_scheme, _, token = header.partition(" ")
        if given_scheme.lower() not in (scheme.lower(), "bearer", "oauth"):
            return self._error(401, "Missing or malformed authorization header")
        record = self.tokens.get(token.strip())
        if record is None or not record.valid:
            return self._error(401, "Invalid OAuth token")
        if scheme == "Bearer" and request.headers.get("Client-Id") != record.client_id:
            return self._error(401, "Client ID and OAuth token do not match")
        return record

    # -- OAuth -----------------------------------------------------------------

    async def _validate(self, request: web.Request) -> web.Response:
        _, failure = await self._record(request)
        if failure is not None:
            return failure
        auth = self._auth(request, scheme="OAuth")
        if isinstance(auth, web.Response):
            return web.json_response({"status": 401, "message": "invalid access token"}, status=401)
        return web.json_response(
            {
                "client_id": auth.client_id,
                "login": auth.user.login,
                "scopes": auth.scopes,
                "user_id": auth.user.id,
                "expires_in": auth.expires_in,
            }
        )

    async def _token(self, request: web.Request) -> web.Response:
        record, failure = await self._record(request)
        if failure is not None:
            return failure
        form = record.body if isinstance(record.body, dict) else {}
        params = {**{k: v[0] for k, v in record.query.items()}, **form}
        if params.get("grant_type") != "refresh_token":
            return web.json_response(
                {"status": 400, "message": "unsupported grant type"}, status=400
            )
        if (
            params.get("client_id") != self.client_id
            or params.get("client_secret") != self.client_secret
        ):
            return web.json_response(
                {"status": 400, "message": "invalid client secret"}, status=400
            )
        old = next(
            (
                t
                for t in self.tokens.values()
                if t.refresh and t.refresh == params.get("refresh_token")
            ),
            None,
        )
        if old is None:
            return web.json_response(
                {"status": 400, "message": "Invalid refresh token"}, status=400
            )
        old.valid = False
        new_token = f"refreshed-{uuid.uuid4().hex}"
        new_refresh = f"refresh-{uuid.uuid4().hex}"
        self.tokens[new_token] = FakeToken(
            new_token, old.user, list(old.scopes), old.client_id, old.expires_in, new_refresh
        )
        old.refresh = None
        return web.json_response(
            {
                "access_token": new_token,
                "refresh_token": new_refresh,
                "scope": list(old.scopes),
                "token_type": "bearer",
                "expires_in": old.expires_in,
            }
        )

    # -- Helix -----------------------------------------------------------------

    async def _users(self, request: web.Request) -> web.Response:
        _, failure = await self._record(request)
        if failure is not None:
            return failure
        auth = self._auth(request)
        if isinstance(auth, web.Response):
            return auth
        logins = [v.lower() for v in request.query.getall("login", [])]
        ids = request.query.getall("id", [])
        if not logins and not ids:
            found = [auth.user]
        else:
            found = [u for u in self.users.values() if u.login in logins or u.id in ids]
        return web.json_response({"data": [u.as_helix() for u in found]})

    async def _streams(self, request: web.Request) -> web.Response:
        _, failure = await self._record(request)
        if failure is not None:
            return failure
        auth = self._auth(request)
        if isinstance(auth, web.Response):
            return auth
        ids = request.query.getall("user_id", [])
        logins = [v.lower() for v in request.query.getall("user_login", [])]
        first = int(request.query.get("first", "20"))
        if not 1 <= first <= 100:
            return self._error(400, "first must be between 1 and 100")
        found = [
            s for s in self.streams.values() if s["user_id"] in ids or s["user_login"] in logins
        ]
        if not ids and not logins:
            found = list(self.streams.values())
        found.sort(key=lambda s: -s["viewer_count"])
        return web.json_response({"data": found[:first], "pagination": {}})

    async def _channels(self, request: web.Request) -> web.Response:
        _, failure = await self._record(request)
        if failure is not None:
            return failure
        auth = self._auth(request)
        if isinstance(auth, web.Response):
            return auth
        ids = request.query.getall("broadcaster_id", [])
        if not ids:
            return self._error(400, 'Missing required parameter "broadcaster_id"')
        data = []
        for user in self.users.values():
            if user.id not in ids:
                continue
            info = self.channel_info.get(user.login, {"title": "", "game_name": ""})
            data.append(
                {
                    "broadcaster_id": user.id,
                    "broadcaster_login": user.login,
                    "broadcaster_name": user.display_name,
                    "broadcaster_language": "en",
                    "game_id": str(zlib.crc32(info["game_name"].encode()))
                    if info["game_name"]
                    else "",
                    "game_name": info["game_name"],
                    "title": info["title"],
                    "delay": 0,
                    "tags": [],
                    "content_classification_labels": [],
                    "is_branded_content": False,
                }
            )
        return web.json_response({"data": data})

    def _sub_view(self, sub: dict[str, Any]) -> dict[str, Any]:
        return dict(sub)

    async def _create_subscription(self, request: web.Request) -> web.Response:
        record, failure = await self._record(request)
        if failure is not None:
            return failure
        auth = self._auth(request)
        if isinstance(auth, web.Response):
            return auth
        body = record.body if isinstance(record.body, dict) else {}
        type_, version = body.get("type"), str(body.get("version", ""))
        condition = body.get("condition") or {}
        transport = body.get("transport") or {}
        if type_ not in SUBSCRIPTION_TYPES:
            return self._error(400, f"unsupported subscription type {type_!r}")
        expected_version, scope = SUBSCRIPTION_TYPES[type_]
        if version != expected_version:
            return self._error(400, "unsupported subscription version")
        if transport.get("method") != "websocket":
            return self._error(400, "this fake supports only the websocket transport")
        session = self.sessions.get(str(transport.get("session_id")))
        if session is None or not session.alive or not session.welcomed or session.moved_to:
            return self._error(
                400, "websocket transport session does not exist or has already disconnected"
            )
        if type_ in self.refuse_types:
            return self._error(self.refuse_types[type_], "subscription refused (scripted)")
        if scope is not None and scope not in auth.scopes:
            return self._error(403, "subscription missing proper authorization")
        for key in ("user_id", "moderator_user_id"):
            if key in condition and condition[key] != auth.user.id:
                return self._error(403, f"{key} must be the token's user")
        channel = next(
            (
                u
                for u in self.users.values()
                if u.id
                in (condition.get("broadcaster_user_id"), condition.get("to_broadcaster_user_id"))
            ),
            None,
        )
        if channel is None:
            return self._error(400, "unknown broadcaster")
        # Follows need a moderator's token; subscriptions and cheers the broadcaster's.
        is_broadcaster = auth.user.id == channel.id
        if type_ == "channel.follow" and not (
            is_broadcaster or auth.user.login in self.moderators.get(channel.login, set())
        ):
            return self._error(403, "the token's user is not a moderator of the channel")
        if (
            type_
            in (
                "channel.subscribe",
                "channel.subscription.message",
                "channel.subscription.gift",
                "channel.cheer",
            )
            and not is_broadcaster
        ):
            return self._error(403, "subscription missing proper authorization")
        for sub in self.subscriptions.values():
            if (
                sub["type"] == type_
                and sub["condition"] == condition
                and sub["status"] == "enabled"
                and sub["transport"]["session_id"] == session.id
            ):
                return self._error(409, "subscription already exists")
        sub = {
            "id": str(uuid.uuid4()),
            "status": "enabled",
            "type": type_,
            "version": version,
            "condition": condition,
            "created_at": _now(),
            "transport": {
                "method": "websocket",
                "session_id": session.id,
                "connected_at": session.connected_at,
            },
            "cost": 0,
            "_client_id": auth.client_id,
            "_user_id": auth.user.id,
        }
        self.subscriptions[sub["id"]] = sub
        await self._notify()
        return web.json_response(
            {
                "data": [self._public(sub)],
                "total": len(self.subscriptions),
                "total_cost": 0,
                "max_total_cost": 10,
            },
            status=202,
        )

    @staticmethod
    def _public(sub: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in sub.items() if not k.startswith("_")}

    async def _list_subscriptions(self, request: web.Request) -> web.Response:
        _, failure = await self._record(request)
        if failure is not None:
            return failure
        auth = self._auth(request)
        if isinstance(auth, web.Response):
            return auth
        query = request.query
        subs = [
            s
            for s in self.subscriptions.values()
            if s["_client_id"] == auth.client_id
            and s["_user_id"] == auth.user.id
            and ("status" not in query or s["status"] == query["status"])
            and ("type" not in query or s["type"] == query["type"])
            and ("subscription_id" not in query or s["id"] == query["subscription_id"])
            and ("user_id" not in query or query["user_id"] in s["condition"].values())
        ]
        return web.json_response(
            {
                "data": [self._public(s) for s in subs],
                "total": len(subs),
                "total_cost": 0,
                "max_total_cost": 10,
                "pagination": {},
            }
        )

    async def _delete_subscription(self, request: web.Request) -> web.Response:
        _, failure = await self._record(request)
        if failure is not None:
            return failure
        auth = self._auth(request)
        if isinstance(auth, web.Response):
            return auth
        sub = self.subscriptions.get(request.query.get("id", ""))
        if sub is None or sub["_client_id"] != auth.client_id:
            return self._error(404, "subscription not found")
        del self.subscriptions[sub["id"]]
        await self._notify()
        return web.Response(status=204)

    async def _chat_message(self, request: web.Request) -> web.Response:
        record, failure = await self._record(request)
        if failure is not None:
            return failure
        auth = self._auth(request)
        if isinstance(auth, web.Response):
            return auth
        # Helix documents a JSON body; twitchAPI sends query parameters. Accept both.
        params = {k: v[0] for k, v in record.query.items()}
        if isinstance(record.body, dict):
            params.update({k: str(v) for k, v in record.body.items() if v is not None})
        if "user:write:chat" not in auth.scopes:
            return self._error(403, "missing scope user:write:chat")
        if params.get("sender_id") != auth.user.id:
            return self._error(403, "sender_id must be the token's user")
        broadcaster = next(
            (u for u in self.users.values() if u.id == params.get("broadcaster_id")), None
        )
        text = params.get("message", "")
        if broadcaster is None:
            return self._error(400, "unknown broadcaster_id")
        if not text or len(text) > 500:
            return self._error(400, "message must be 1 to 500 characters")
        message_id = str(uuid.uuid4())
        self.chat_messages.append(
            {
                "message_id": message_id,
                "broadcaster_id": broadcaster.id,
                "sender_id": auth.user.id,
                "message": text,
                "reply_parent_message_id": params.get("reply_parent_message_id"),
            }
        )
        await self._notify()
        if self.echo_chat:
            self._spawn(
                self.send_event(
                    "channel.chat.message",
                    chat_event(broadcaster, auth.user, text, message_id=message_id),
                )
            )
        return web.json_response(
            {"data": [{"message_id": message_id, "is_sent": True, "drop_reason": None}]}
        )


def _form(raw: bytes) -> dict[str, str]:
    from urllib.parse import parse_qsl

    return dict(parse_qsl(raw.decode()))


# -- event payloads in EventSub's documented shapes ---------------------------


def _broadcaster(channel: FakeUser, prefix: str = "broadcaster_user") -> dict[str, str]:
    return {
        f"{prefix}_id": channel.id,
        f"{prefix}_login": channel.login,
        f"{prefix}_name": channel.display_name,
    }


def _user(user: FakeUser | str | None, prefix: str = "user") -> dict[str, Any]:
    if user is None:
        return {f"{prefix}_id": None, f"{prefix}_login": None, f"{prefix}_name": None}
    if isinstance(user, str):
        user = FakeUser(str(zlib.crc32(user.lower().encode())), user.lower(), user)
    return {
        f"{prefix}_id": user.id,
        f"{prefix}_login": user.login,
        f"{prefix}_name": user.display_name,
    }


def chat_event(
    channel: FakeUser, chatter: FakeUser | str, text: str, *, message_id: str | None = None
) -> dict[str, Any]:
    """``channel.chat.message`` v1."""
    return {
        **_broadcaster(channel),
        **_user(chatter, "chatter_user"),
        "message_id": message_id or str(uuid.uuid4()),
        "message": {
            "text": text,
            "fragments": [
                {"type": "text", "text": text, "cheermote": None, "emote": None, "mention": None}
            ],
        },
        "color": "#00FF00",
        "badges": [],
        "message_type": "text",
        "cheer": None,
        "reply": None,
        "channel_points_custom_reward_id": None,
        "source_broadcaster_user_id": None,
        "source_broadcaster_user_login": None,
        "source_broadcaster_user_name": None,
        "source_message_id": None,
        "source_badges": None,
    }


def follow_event(channel: FakeUser, user: FakeUser | str) -> dict[str, Any]:
    """``channel.follow`` v2."""
    return {**_user(user), **_broadcaster(channel), "followed_at": _now()}


def subscribe_event(
    channel: FakeUser, user: FakeUser | str, *, tier: str = "1000", is_gift: bool = False
) -> dict[str, Any]:
    """``channel.subscribe`` v1."""
    return {**_user(user), **_broadcaster(channel), "tier": tier, "is_gift": is_gift}


def resub_event(
    channel: FakeUser,
    user: FakeUser | str,
    *,
    months: int = 3,
    text: str = "",
    tier: str = "1000",
) -> dict[str, Any]:
    """``channel.subscription.message`` v1."""
    return {
        **_user(user),
        **_broadcaster(channel),
        "tier": tier,
        "message": {"text": text, "emotes": []},
        "cumulative_months": months,
        "streak_months": None,
        "duration_months": 1,
    }


def gift_event(
    channel: FakeUser,
    user: FakeUser | str | None,
    *,
    total: int = 1,
    tier: str = "1000",
    cumulative_total: int | None = None,
) -> dict[str, Any]:
    """``channel.subscription.gift`` v1 (``user=None``: an anonymous gifter)."""
    return {
        **_user(user),
        **_broadcaster(channel),
        "total": total,
        "tier": tier,
        "cumulative_total": None if user is None else cumulative_total,
        "is_anonymous": user is None,
    }


def cheer_event(
    channel: FakeUser, user: FakeUser | str | None, bits: int, *, text: str = ""
) -> dict[str, Any]:
    """``channel.cheer`` v1 (``user=None``: anonymous)."""
    return {
        "is_anonymous": user is None,
        **_user(user),
        **_broadcaster(channel),
        "message": text,
        "bits": bits,
    }


def raid_event(channel: FakeUser, raider: FakeUser | str, viewers: int) -> dict[str, Any]:
    """``channel.raid`` v1 (``raider`` raided ``channel``)."""
    return {
        **_user(raider, "from_broadcaster_user"),
        **_broadcaster(channel, "to_broadcaster_user"),
        "viewers": viewers,
    }
