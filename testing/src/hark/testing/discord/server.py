"""``FakeDiscord``: a loopback Discord (REST v10 + gateway + voice) for end-to-end tests.

Point an unpatched discord.py client at it with::

    discord.http.Route.BASE = server.api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(server.gateway_url)

and drive it with the helpers (``create_guild``, ``post_message``,
``invoke_slash``, ``wait_for_message``, ...). Everything binds 127.0.0.1.

For voice, create the bot with ``connector=server.bot_connector()`` so that it
trusts the voice server's ``wss://`` certificate (see :mod:`.voice_helpers`).
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from aiohttp import web

from . import gateway as gw
from . import rest_channels, rest_interactions, rest_threads, rest_users
from .base import GuildLike
from .commands import CommandRegistry
from .gateway import Gateway, GatewayEvent, GatewaySession, IdentifyRecord
from .guilds import GuildHelpers
from .interaction_record import InteractionRecord
from .interactions import InteractionHelpers
from .payloads import member_payload, self_user_payload, user_payload
from .permissions import CONNECT, VIEW_CHANNEL, channel_permissions, has
from .responses import InteractionResponses
from .rest import DelayRule, FaultRule, build_app
from .snowflakes import SnowflakeGenerator, shard_of
from .state import FakeState, UserRecord
from .threads import ThreadHelpers
from .voice import VoiceStateRecord, VoiceStates
from .voice_helpers import VoiceHelpers
from .voice_server import VoiceServer
from .waiters import Waiters

# Application flags for an unverified bot with all privileged intents enabled:
# GATEWAY_PRESENCE_LIMITED, GATEWAY_GUILD_MEMBERS_LIMITED, GATEWAY_MESSAGE_CONTENT_LIMITED.
_INTENT_APP_FLAGS = {
    gw.GUILD_PRESENCES: 1 << 13,
    gw.GUILD_MEMBERS: 1 << 15,
    gw.MESSAGE_CONTENT: 1 << 19,
}
APPLICATION_COMMAND_BADGE = 1 << 23


class FakeDiscord(
    GuildHelpers,
    ThreadHelpers,
    InteractionHelpers,
    InteractionResponses,
    CommandRegistry,
    VoiceHelpers,
):
    """A Discord-compatible server on 127.0.0.1 with a bot application and an owner."""

    def __init__(
        self,
        *,
        bot_name: str = "HarkBot",
        owner_name: str = "owner",
        heartbeat_interval_ms: int = 41250,
        interaction_ack_timeout: float | None = 3.0,
        privileged_intents: int = gw.PRIVILEGED_INTENTS,
        resume_buffer_size: int = 2000,
        host: str = "127.0.0.1",
        port: int = 0,
        dave: bool = True,
        dave_transition_timeout: float = 2.0,
        unfurl_delay: float | None = 0.05,
        shard_count: int = 1,
        max_concurrency: int | None = None,
        identify_interval: float = 5.0,
    ) -> None:
        """``shard_count``: the bot's shards (what `/gateway/bot` recommends and every
        IDENTIFY must name). ``max_concurrency``: identify buckets (Discord's
        ``session_start_limit.max_concurrency``, reported as 1 when None). One IDENTIFY
        per bucket per ``identify_interval`` seconds is allowed when the server is
        sharded or ``max_concurrency`` is given; a single-shard server does not limit
        it, so tests can restart a bot at once."""
        if shard_count < 1 or (max_concurrency is not None and max_concurrency < 1):
            raise ValueError("shard_count and max_concurrency must be 1 or more")
        self.state = FakeState()
        # Seconds before published links in a message get their embeds (web.py).
        self.unfurl_delay = unfurl_delay
        self._web = {}
        self._web_keys = {}
        self.ids = SnowflakeGenerator()
        self.voice = VoiceStates()
        self._waiters = Waiters()
        self.requests = []
        self.unhandled_routes: list[str] = []  # "METHOD /path" of routes the fake lacks
        self.cdn_requests: list[str] = []  # paths of file downloads (CDN, media proxy)
        self.internal_errors: list[str] = []  # bugs in the fake itself
        self.typing_events = []
        self.bot_voice_requests: list[dict[str, Any]] = []  # raw op 4 payloads
        self._attachments = {}
        self._message_seq = 0
        self._interactions: dict[int, InteractionRecord] = {}
        self._faults: list[FaultRule] = []
        self._delays: list[DelayRule] = []
        self.interaction_ack_timeout = interaction_ack_timeout
        self._privileged_intents = privileged_intents
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._http_base = ""

        # Like modern Discord apps, the bot user shares the application's id.
        self.application_id = self.ids.next()
        self.bot_user = UserRecord(id=self.application_id, username=bot_name, bot=True)
        self.state.users[self.bot_user.id] = self.bot_user
        self.state.bot_user_id = self.bot_user.id
        self.owner = self.create_user(owner_name)
        encoded_id = base64.b64encode(str(self.bot_user.id).encode()).decode().rstrip("=")
        self.bot_token = f"{encoded_id}.FAKE.{secrets.token_urlsafe(27)}"
        limited = shard_count > 1 or max_concurrency is not None
        self.gateway = Gateway(
            self,
            heartbeat_interval_ms=heartbeat_interval_ms,
            buffer_size=resume_buffer_size,
            shard_count=shard_count,
            max_concurrency=max_concurrency or 1,
            identify_interval=identify_interval if limited else None,
        )
        self.gateway.changed = self._changed
        self.gateway.internal_errors = self.internal_errors
        # Started on the bot's first voice join (needs trustme and libopus only then).
        # DAVE (E2EE voice) is on by default, as on Discord; see voice_helpers.
        self.voice_server = VoiceServer(
            self,
            host=host,
            internal_errors=self.internal_errors,
            dave=dave,
            dave_transition_timeout=dave_transition_timeout,
        )

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> FakeDiscord:
        routes = (
            rest_users.ROUTES
            + rest_channels.ROUTES
            + rest_threads.ROUTES
            + rest_interactions.ROUTES
        )
        self._runner = web.AppRunner(build_app(self, routes), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        port = self._runner.addresses[0][1]
        self._http_base = f"http://{self._host}:{port}"
        self.gateway.url = f"ws://{self._host}:{port}/gateway"
        return self

    async def close(self) -> None:
        await self.voice_server.close()
        await self.gateway.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- addresses and counters --------------------------------------------------

    @property
    def started(self) -> bool:
        return self._runner is not None

    @property
    def http_base(self) -> str:
        return self._http_base

    @property
    def api_base(self) -> str:
        """The value for ``discord.http.Route.BASE``."""
        return f"{self._http_base}/api/v10"

    @property
    def gateway_url(self) -> str:
        """The value for ``DiscordWebSocket.DEFAULT_GATEWAY`` (as a ``yarl.URL``)."""
        return self.gateway.url

    @property
    def identify_count(self) -> int:
        return self.gateway.identify_count

    @property
    def resume_count(self) -> int:
        return self.gateway.resume_count

    @property
    def shard_count(self) -> int:
        return self.gateway.shard_count

    @property
    def max_concurrency(self) -> int:
        return self.gateway.max_concurrency

    @property
    def identifies(self) -> list[IdentifyRecord]:
        """Every IDENTIFY with a valid token, intents and shard, in arrival order."""
        return list(self.gateway.identifies)

    @property
    def refused_identifies(self) -> list[IdentifyRecord]:
        """IDENTIFYs refused (op 9) for coming too soon in their bucket: a bot that
        ignores ``max_concurrency`` leaves entries here (assert it stays empty)."""
        return [i for i in self.gateway.identifies if i.refused]

    def shard_of(self, guild: GuildLike) -> int:
        """The shard that carries this server's events."""
        return shard_of(self._guild(guild).id, self.shard_count)

    @property
    def gateway_events(self) -> list[GatewayEvent]:
        """Every dispatched event (session id, seq, name), for debugging."""
        return self.gateway.events

    @property
    def sessions(self) -> list[GatewaySession]:
        """Live (not ended) gateway sessions."""
        return self.gateway.live_sessions

    @property
    def connected_sessions(self) -> list[GatewaySession]:
        """Live sessions that currently have a socket attached."""
        return [s for s in self.gateway.live_sessions if s.connection is not None]

    @property
    def interactions(self) -> list[InteractionRecord]:
        return list(self._interactions.values())

    # -- waiting on the gateway ----------------------------------------------------

    async def wait_until_connected(self, *, timeout: float = 10.0) -> GatewaySession:
        """Wait for a bot session that is identified and has a socket attached."""
        return await self._waiters.wait_for(
            lambda: next((s for s in self.sessions if s.connection is not None), None),
            timeout=timeout,
            describe=lambda: f"a gateway session (identify_count={self.identify_count})",
        )

    async def wait_for_shards(
        self, shards: Iterable[int] | None = None, *, timeout: float = 30.0
    ) -> dict[int, GatewaySession]:
        """Wait until each of ``shards`` (default: all of them) has an identified
        session with a socket attached; returns them by shard id."""
        wanted = set(range(self.shard_count) if shards is None else shards)

        def connected() -> dict[int, GatewaySession] | None:
            found = {s.shard[0]: s for s in self.connected_sessions if s.shard[0] in wanted}
            return found if set(found) == wanted else None

        return await self._waiters.wait_for(
            connected,
            timeout=timeout,
            describe=lambda: (
                f"sessions for shards {sorted(wanted)}; connected: "
                f"{sorted(s.shard[0] for s in self.connected_sessions)}"
            ),
        )

    async def wait_for_resume(self, count: int = 1, *, timeout: float = 10.0) -> None:
        await self._waiters.wait_for(
            lambda: True if self.resume_count >= count else None,
            timeout=timeout,
            describe=lambda: f"{count} RESUME(s), have {self.resume_count}",
        )

    # -- fault injection -------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int,
        retry_after: float | None = None,
        times: int = 1,
        *,
        body: dict[str, Any] | None = None,
    ) -> FaultRule:
        """Answer the next ``times`` matching REST calls with ``status``.

        ``path_regex`` is searched in the path after ``/api/v10`` (e.g.
        ``r"/channels/\\d+/messages$"``); ``method`` may be ``"*"``. A 429 carries
        ``Retry-After`` and a JSON ``retry_after`` (default 1 s), ``global: false``.
        """
        rule = FaultRule(method.upper(), re.compile(path_regex), status, retry_after, times, body)
        self._faults.append(rule)
        return rule

    def _take_fault(self, method: str, path: str) -> FaultRule | None:
        for rule in self._faults:
            if rule.matches(method, path):
                rule.remaining -= 1
                return rule
        return None

    def delay_next(self, method: str, path_regex: str, seconds: float, times: int = 1) -> DelayRule:
        """Hold the next ``times`` matching REST calls for ``seconds`` before answering
        them (normally, or with an injected fault): a slow network or a busy Discord.

        ``method`` and ``path_regex`` work as in :meth:`fail_next`.
        """
        rule = DelayRule(method.upper(), re.compile(path_regex), seconds, times)
        self._delays.append(rule)
        return rule

    def _take_delay(self, method: str, path: str) -> float:
        for rule in self._delays:
            if rule.matches(method, path):
                rule.remaining -= 1
                return rule.seconds
        return 0.0

    async def drop_gateway(
        self, resumable: bool = True, *, code: int | None = None, abnormal: bool = False
    ) -> None:
        """Close the bot's gateway socket(s).

        Resumable drops use close code 4000 (or ``abnormal=True`` cuts the TCP
        connection without a close frame); events dispatched meanwhile are
        buffered and replayed on RESUME. ``resumable=False`` ends the session
        (4009), so the client must IDENTIFY again (discord.py waits 5 s first).
        """
        await self.gateway.drop(resumable=resumable, code=code, abnormal=abnormal)

    def refuse_gateway(self, times: int = 1) -> None:
        """Answer the next ``times`` gateway connections with HTTP 503 (no WebSocket),
        like a server that is restarting: clients retry with backoff."""
        self.gateway.refuse_connections = times

    def request_reconnect(self) -> None:
        """Send op 7 RECONNECT to the bot."""
        self.gateway.request_reconnect()

    def invalidate_session(self, *, resumable: bool = False) -> None:
        """Send op 9 INVALID_SESSION (ending the session unless ``resumable``)."""
        self.gateway.invalidate_sessions(resumable=resumable)

    # -- GatewayBackend ------------------------------------------------------------

    def check_token(self, token: Any) -> bool:
        return isinstance(token, str) and secrets.compare_digest(token, self.bot_token)

    def allowed_intents(self) -> int:
        """Intents the bot may identify with: non-privileged + enabled privileged."""
        return ~gw.PRIVILEGED_INTENTS | self._privileged_intents

    def ready_payload(self, session: GatewaySession) -> dict[str, Any]:
        return {
            "v": 10,
            "user": self_user_payload(self.bot_user),
            "guilds": [
                {"id": str(g.id), "unavailable": True}
                for g in self.state.guilds.values()
                if session.handles_guild(g.id)
            ],
            "session_id": session.session_id,
            "session_type": "normal",
            "resume_gateway_url": self.gateway_url,
            "shard": list(session.shard),
            "application": {"id": str(self.application_id), "flags": self._application_flags()},
            "user_settings": {},
            "relationships": [],
            "private_channels": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["fake-local"],
            "auth": {},
            "_trace": ['["fake-discord-gateway",{"micros":0}]'],
        }

    def initial_guild_creates(self, session: GatewaySession) -> list[dict[str, Any]]:
        return [
            self._guild_create_for(session, guild, announced=True)
            for guild in self.state.guilds.values()
            if session.handles_guild(guild.id)
        ]

    def on_voice_state_update(self, session: GatewaySession, data: dict[str, Any]) -> None:
        """The bot's op 4: join/move/leave voice. Invalid requests are ignored, like Discord."""
        self.bot_voice_requests.append(data)
        guild = self.state.guilds.get(int(data.get("guild_id") or 0))
        # Sent on another shard's connection: that session does not carry this server.
        if guild is None or not session.handles_guild(guild.id):
            return
        channel_id = data.get("channel_id")
        if channel_id is not None:
            channel = guild.channels.get(int(channel_id))
            me = guild.member(self.bot_user.id)
            if channel is None or not channel.is_voice or me is None:
                return
            if not has(channel_permissions(guild, channel, me), VIEW_CHANNEL | CONNECT):
                return
        state = self.voice.update(
            guild.id,
            self.bot_user.id,
            None if channel_id is None else int(channel_id),
            session_id=session.session_id,
            self_mute=bool(data.get("self_mute")),
            self_deaf=bool(data.get("self_deaf")),
        )
        self._dispatch_voice_state(guild, state)
        self.after_bot_voice_state(session, state)

    def after_bot_voice_state(self, session: GatewaySession, state: VoiceStateRecord) -> None:
        """The voice server sends VOICE_SERVER_UPDATE (join/move) or tears down (leave)."""
        self.voice_server.on_bot_voice_state(session, state)

    def member_chunks(self, session: GatewaySession, data: dict[str, Any]) -> list[dict[str, Any]]:
        guild = self.state.guilds.get(int(data.get("guild_id") or 0))
        if guild is None or not session.handles_guild(guild.id):
            return []
        user_ids = [int(u) for u in data.get("user_ids") or []]
        if user_ids:
            members = [guild.members[u] for u in user_ids if u in guild.members]
            not_found = [str(u) for u in user_ids if u not in guild.members]
        else:
            query = (data.get("query") or "").lower()
            members = [
                m for m in guild.members.values() if m.user.username.lower().startswith(query)
            ]
            not_found = []
        limit = int(data.get("limit") or 0)
        if limit:
            members = members[:limit]
        pages = [members[i : i + 1000] for i in range(0, len(members), 1000)] or [[]]
        chunks = []
        for index, page in enumerate(pages):
            chunk: dict[str, Any] = {
                "guild_id": str(guild.id),
                "members": [member_payload(m) for m in page],
                "chunk_index": index,
                "chunk_count": len(pages),
            }
            if data.get("nonce"):
                chunk["nonce"] = data["nonce"]
            if not_found and index == 0:
                chunk["not_found"] = not_found
            if data.get("presences"):
                chunk["presences"] = []
            chunks.append(chunk)
        return chunks

    # -- REST payloads ---------------------------------------------------------------

    def _application_flags(self) -> int:
        flags = APPLICATION_COMMAND_BADGE
        for intent, flag in _INTENT_APP_FLAGS.items():
            if self._privileged_intents & intent:
                flags |= flag
        return flags

    def application_payload(self) -> dict[str, Any]:
        """``GET /oauth2/applications/@me``: everything discord.py's AppInfo reads."""
        return {
            "id": str(self.application_id),
            "name": self.bot_user.username,
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "rpc_origins": [],
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": secrets.token_hex(32),
            "flags": self._application_flags(),
            "owner": user_payload(self.owner),
            "team": None,
            "bot": user_payload(self.bot_user),
            "guild_id": None,
            "primary_sku_id": None,
            "slug": None,
            "cover_image": None,
            "tags": [],
            "terms_of_service_url": None,
            "privacy_policy_url": None,
            "custom_install_url": None,
            "role_connections_verification_url": None,
            "install_params": {"scopes": ["bot", "applications.commands"], "permissions": "0"},
            "integration_types_config": {"0": {}},
            # Must stay None: with an endpoint URL, Discord would not send interactions
            # over the gateway (and discord.py warns about it).
            "interactions_endpoint_url": None,
            "redirect_uris": [],
            "approximate_guild_count": len(self.state.guilds),
            "approximate_user_install_count": 0,
            "hook": True,
            "is_monetized": False,
        }
