"""Twitch's HTTP side through twitchAPI: token validation and refresh, Helix users,
EventSub subscriptions and chat messages, with errors mapped into Hark's hierarchy
(aiohttp's by the core's shared :class:`hark.api.ErrorTranslator`, twitchAPI's own
exceptions by a small adapter here).

Every URL comes from :class:`~hark_twitch.config.TwitchConfig` and reaches twitchAPI
through its documented parameters (``Twitch(base_url=, auth_base_url=)``,
``validate_token(auth_base_url=)``), so tests aim it at a loopback server.
No error message or log line here carries a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from hark import (
    ConfigurationError,
    ProviderError,
    ProviderStatusError,
    register_secret,
)
from hark.api import ErrorTranslator, HttpFailure
from hark_twitch.config import TwitchConfig
from hark_twitch.settings import ACCESS_TOKEN

if TYPE_CHECKING:
    from twitchAPI.twitch import Twitch

# twitchAPI (with dateutil and enum_tools) is imported where a connection validates its
# token or reads one of the library's errors, not with the plugin: `bot plugins` and a
# bot with Twitch unconfigured never load it. aiohttp is discord.py's, loaded anyway.

log = logging.getLogger(__name__)

PROVIDER = "twitch"


class FatalTwitchError(ConfigurationError):
    """Retrying cannot help (a rejected token, an unknown channel): the operator must act."""


@dataclass(slots=True)
class TokenInfo:
    user_id: str
    login: str
    client_id: str
    scopes: list[str] = field(default_factory=list)
    expires_in: int | None = None


@dataclass(slots=True)
class TwitchUserInfo:
    id: str
    login: str
    display_name: str


@dataclass(slots=True)
class LiveStream:
    """A live stream, as ``GET /streams`` describes it."""

    title: str
    game_name: str
    viewer_count: int
    started_at: datetime.datetime | None
    language: str = ""


@dataclass(slots=True)
class ChannelInfo:
    """What ``GET /channels`` says of a channel, live or not: its current (or last)
    title and category."""

    title: str
    game_name: str


def _named(error: ProviderError, what: str) -> ProviderError:
    """``error`` as the connection reports it: this plugin's, naming the request."""
    error.provider = PROVIDER
    if what not in error.message:
        error.message = f"{error.message} ({what})"
        error.args = (error.message,)
    return error


@functools.cache
def _status_of() -> tuple[tuple[type[Exception], int], ...]:
    """The statuses twitchAPI read before raising its own exceptions (it keeps no
    response); the first match wins, so a subclass comes before its base."""
    from twitchAPI.type import (
        EventSubSubscriptionConflict,
        ForbiddenError,
        TwitchAPIException,
        TwitchAuthorizationException,
        TwitchBackendException,
        TwitchResourceNotFound,
    )

    return (
        (ForbiddenError, 403),
        (TwitchResourceNotFound, 404),
        (EventSubSubscriptionConflict, 409),
        (TwitchBackendException, 503),
        (TwitchAuthorizationException, 401),  # UnauthorizedException included
        (TwitchAPIException, 400),  # the base: a bad request, or a refusal it does not name
    )


def _refused(what: str) -> Callable[[HttpFailure], ProviderError | None]:
    """Helix's own reading of the statuses that are about the request, not the token."""

    def reading(failure: HttpFailure) -> ProviderError | None:
        status, detail = failure.status, (f": {failure.detail}" if failure.detail else "")
        if status in (400, 403):
            return ProviderStatusError(f"Twitch refused {what}{detail}", status=status)
        if status == 404:
            return ProviderStatusError(f"Twitch found nothing for {what}{detail}", status=status)
        if status == 409:
            return ProviderStatusError(f"{what} already exists{detail}", status=status)
        return None

    return reading


class Helix:
    """The HTTP half of the connection: one instance per connection attempt."""

    def __init__(
        self,
        config: TwitchConfig,
        *,
        on_tokens: Callable[[str, str], Awaitable[None] | None] | None = None,
    ) -> None:
        self.config = config
        # The current tokens (a refresh replaces them); never in a message or a log line.
        self.token = config.access_token
        self.refresh_token = config.refresh_token
        self.twitch: Twitch | None = None
        self._on_tokens = on_tokens
        self.refreshed = False
        # Passed to twitchAPI's OAuth helpers: on their own they open a session per call
        # and leak it when the request fails (e.g. connection refused).
        self._http: aiohttp.ClientSession | None = None
        self.errors = ErrorTranslator(
            "Twitch",
            key_env=ACCESS_TOKEN.env,
            secrets=lambda: [self.token, self.refresh_token, config.client_secret],
            timeout=config.settings.request_timeout,
        )

    def _auth_http(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.config.settings.request_timeout)
            )
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _guard(self, what: str, call: Callable[[], Awaitable[Any]]) -> Any:
        try:
            async with asyncio.timeout(self.config.settings.request_timeout):
                return await call()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise self.translate(exc, what) from None

    def translate(self, exc: BaseException, what: str) -> ProviderError:
        """A twitchAPI / aiohttp exception as one of Hark's errors, naming the request
        (never the library's text: it can carry URLs)."""
        from twitchAPI.type import (
            InvalidRefreshTokenException,
            InvalidTokenException,
            MissingScopeException,
            TwitchAPIException,
        )

        if isinstance(exc, InvalidRefreshTokenException):
            return FatalTwitchError(
                "TWITCH_REFRESH_TOKEN was rejected by Twitch; authorize the bot again",
                provider=PROVIDER,
            )
        if isinstance(exc, InvalidTokenException | MissingScopeException):
            return FatalTwitchError(f"Twitch rejected the access token ({what})", provider=PROVIDER)
        if isinstance(exc, TwitchAPIException):
            status = next(code for kind, code in _status_of() if isinstance(exc, kind))
            return self.status_error(self.errors.failure(status, None), what)
        error = self.errors.translate(exc)
        if not isinstance(error, ProviderError):
            log.debug("twitch: %s failed", what, exc_info=exc)
            error = ProviderError(f"unexpected {type(exc).__name__} during {what}")
        return _named(error, what)

    def status_error(self, failure: HttpFailure, what: str) -> ProviderError:
        return _named(self.errors.status_error(failure, on_status=_refused(what)), what)

    # -- the token ---------------------------------------------------------

    async def validate(self) -> TokenInfo:
        """Validate the user access token (refreshing it once when it expired and a refresh
        token and client secret are configured)."""
        from twitchAPI.oauth import validate_token
        from twitchAPI.type import AuthScope

        data = await self._guard(
            "token validation",
            lambda: validate_token(
                self.token, self._auth_http(), auth_base_url=self.config.settings.auth_base
            ),
        )
        if data.get("status", 200) == 401 and self.config.can_refresh:
            await self._refresh()
            data = await self._guard(
                "token validation",
                lambda: validate_token(
                    self.token, self._auth_http(), auth_base_url=self.config.settings.auth_base
                ),
            )
        status = data.get("status", 200)
        if status == 401:
            hint = (
                "the refreshed token was rejected too"
                if self.refreshed
                else "set TWITCH_REFRESH_TOKEN and TWITCH_CLIENT_SECRET to refresh it automatically"
                if not self.config.can_refresh
                else "refreshing it failed"
            )
            raise FatalTwitchError(
                f"TWITCH_ACCESS_TOKEN was rejected by Twitch (invalid or expired; {hint})",
                provider=PROVIDER,
            )
        if status != 200:
            raise self.status_error(self.errors.failure(status, data), "token validation")
        if not data.get("user_id") or not data.get("login"):
            raise FatalTwitchError(
                "TWITCH_ACCESS_TOKEN is an app access token; EventSub over WebSocket needs a "
                "user access token",
                provider=PROVIDER,
            )
        if data.get("client_id") != self.config.client_id:
            raise FatalTwitchError(
                "TWITCH_ACCESS_TOKEN was issued to another application than TWITCH_CLIENT_ID",
                provider=PROVIDER,
            )
        scopes = [
            s.value if isinstance(s, AuthScope) else str(s) for s in data.get("scopes") or [] if s
        ]
        return TokenInfo(
            user_id=str(data["user_id"]),
            login=str(data["login"]),
            client_id=str(data["client_id"]),
            scopes=scopes,
            expires_in=data.get("expires_in"),
        )

    async def _refresh(self) -> None:
        log.info("twitch: the access token expired; refreshing it")
        from twitchAPI.oauth import refresh_access_token

        token, refresh = await self._guard(
            "token refresh",
            lambda: refresh_access_token(
                self.refresh_token,
                self.config.client_id,
                self.config.client_secret,
                self._auth_http(),
                auth_base_url=self.config.settings.auth_base,
            ),
        )
        await self._store_tokens(token, refresh)
        if self.twitch is not None:
            # The Helix client keeps its own copy of the token.
            twitch = self.twitch
            await self._guard(
                "token update",
                lambda: twitch.set_user_authentication(
                    token, twitch.get_user_auth_scope(), refresh, validate=False
                ),
            )

    async def _store_tokens(self, token: str, refresh: str) -> None:
        register_secret(token)
        register_secret(refresh)
        self.token, self.refresh_token = token, refresh
        self.refreshed = True
        if self._on_tokens is not None:
            result = self._on_tokens(token, refresh)
            if asyncio.iscoroutine(result):
                await result

    # -- Helix ---------------------------------------------------------------

    async def open(self, info: TokenInfo) -> None:
        """Build the twitchAPI client on the validated user token (no app token: none is
        needed for WebSocket subscriptions or chat messages)."""
        from twitchAPI.twitch import Twitch
        from twitchAPI.type import AuthScope

        async def build() -> Twitch:
            twitch = await Twitch(
                self.config.client_id,
                self.config.client_secret or None,
                authenticate_app=False,
                base_url=self.config.settings.api_base,
                auth_base_url=self.config.settings.auth_base,
                session_timeout=aiohttp.ClientTimeout(total=self.config.settings.request_timeout),
            )
            twitch.auto_refresh_auth = self.config.can_refresh
            scopes = []
            for name in info.scopes:
                try:
                    scopes.append(AuthScope(name))
                except ValueError:
                    continue  # a scope twitchAPI does not know yet: not one we need
            await twitch.set_user_authentication(
                self.token, scopes, self.refresh_token or None, validate=False
            )
            twitch.user_auth_refresh_callback = self._store_tokens
            return twitch

        self.twitch = await self._guard("client set-up", build)

    def _client(self) -> Twitch:
        if self.twitch is None:
            raise RuntimeError("Helix.open() was not called")
        return self.twitch

    async def user(self, login: str) -> TwitchUserInfo | None:
        async def lookup() -> TwitchUserInfo | None:
            async for user in self._client().get_users(logins=[login]):
                return TwitchUserInfo(str(user.id), str(user.login), str(user.display_name))
            return None

        return await self._guard(f"the user lookup of {login!r}", lookup)

    async def stream(self, broadcaster_id: str, login: str) -> LiveStream | None:
        """The channel's live stream, or None when it is offline."""

        async def lookup() -> LiveStream | None:
            streams = self._client().get_streams(user_id=[broadcaster_id], first=1)
            # Closed at once: the generator holds an HTTP session until it finishes.
            async with contextlib.aclosing(streams):
                async for stream in streams:
                    if getattr(stream, "type", "live") not in ("live", ""):
                        continue
                    return LiveStream(
                        title=str(getattr(stream, "title", "") or ""),
                        game_name=str(getattr(stream, "game_name", "") or ""),
                        viewer_count=int(getattr(stream, "viewer_count", 0) or 0),
                        started_at=getattr(stream, "started_at", None),
                        language=str(getattr(stream, "language", "") or ""),
                    )
            return None

        return await self._guard(f"the stream lookup of {login!r}", lookup)

    async def channel(self, broadcaster_id: str, login: str) -> ChannelInfo | None:
        """The channel's title and category (None if Twitch knows no such channel)."""

        async def lookup() -> ChannelInfo | None:
            for info in await self._client().get_channel_information(broadcaster_id):
                return ChannelInfo(
                    title=str(getattr(info, "title", "") or ""),
                    game_name=str(getattr(info, "game_name", "") or ""),
                )
            return None

        return await self._guard(f"the channel lookup of {login!r}", lookup)

    async def subscribe(
        self, type_: str, version: str, condition: dict[str, str], session_id: str
    ) -> None:
        await self._guard(
            f"the {type_} subscription",
            lambda: self._client().create_eventsub_subscription(
                type_, version, condition, {"method": "websocket", "session_id": session_id}
            ),
        )

    async def subscriptions(self) -> list[dict[str, Any]]:
        """This token's EventSub subscriptions as Twitch lists them."""
        from twitchAPI.type import AuthType

        async def listing() -> list[dict[str, Any]]:
            result = await self._client().get_eventsub_subscriptions(target_token=AuthType.USER)
            return [
                {
                    "id": sub.id,
                    "type": sub.type,
                    "status": sub.status,
                    "session_id": (sub.transport or {}).get("session_id"),
                }
                async for sub in result
            ]

        return await self._guard("the subscription list", listing)

    async def send_chat(
        self, broadcaster_id: str, sender_id: str, text: str, reply_to: str | None = None
    ) -> str | None:
        """Post ``text`` in the channel's chat. Returns Twitch's drop reason, or None if sent."""
        result = await self._guard(
            "the chat message",
            lambda: self._client().send_chat_message(
                broadcaster_id, sender_id, text, reply_parent_message_id=reply_to or None
            ),
        )
        if result is None or getattr(result, "is_sent", False):
            return None
        reason = getattr(result, "drop_reason", None)
        return getattr(reason, "message", None) or "dropped by Twitch"
