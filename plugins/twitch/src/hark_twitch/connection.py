"""The bot's one Twitch connection: a background task that never takes the bot down.
In a bot of several processes only one holds it, the leader of ``"twitch"``
(``host.run_once``); the others are on ``standby`` and use :meth:`TwitchConnection.lookup`
for the tools' Helix requests.

Each attempt validates the token (naming missing scopes in one line), looks up
the channel, opens an EventSub WebSocket session, subscribes through Helix, and
then hands every notification to ``on_event``. When the session is lost
(connection refused or dropped, keepalive timeout, Twitch closing it) the task
waits with exponential backoff and starts over; errors that retrying cannot fix
(a rejected token, an unknown channel) stop it with one clear line instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import aiohttp

from hark import ProviderError, ProviderStatusError
from hark_twitch.config import CHAT_WRITE_SCOPE, TOPIC_BY_TYPE, TOPICS, TwitchConfig
from hark_twitch.events import TwitchEvent, parse_notification
from hark_twitch.eventsub import EventSubSession
from hark_twitch.helix import FatalTwitchError, Helix, TokenInfo, TwitchUserInfo

log = logging.getLogger("hark_twitch")

# A session that stayed up this long resets the backoff to its first step.
HEALTHY_AFTER = 60.0
# Twitch asks apps to validate their tokens hourly while they use them.
VALIDATE_EVERY = 3600.0
# Subscription statuses shown by `!twitch status`.
SUBSCRIBED = "subscribed"


class TwitchConnection:
    """State is public and read by the Cog (``!twitch status``)."""

    def __init__(
        self,
        config: TwitchConfig,
        *,
        on_event: Callable[[TwitchEvent], None] | None = None,
    ) -> None:
        self.config = config
        self.on_event = on_event
        # not configured | starting | connected | reconnecting | failed | stopped, or
        # standby: another process of the bot holds the connection (set by the Cog)
        self.state = "not configured" if not config.configured else "stopped"
        self.error: str | None = None
        self.scope_error: str | None = None
        self.topics: dict[str, str] = {t.key: "not subscribed" for t in TOPICS}
        self.token: TokenInfo | None = None
        self.broadcaster: TwitchUserInfo | None = None
        self.session_id: str | None = None
        self.connected_at: float | None = None
        self.last_event: TwitchEvent | None = None
        self.counts: Counter[str] = Counter()
        self.sessions = 0  # sessions that reached "connected"
        self.moves = 0  # session_reconnect hand-overs
        self.attempt = 0  # failed attempts since the last healthy session
        self.next_retry_at: float | None = None
        self.retry_delays: deque[float] = deque(maxlen=32)
        self.helix: Helix | None = None
        self.validate_every = VALIDATE_EVERY
        self._task: asyncio.Task[None] | None = None
        self._subscription_ids: dict[str, str] = {}
        self._logged_scope_error: str | None = None
        self._connected = asyncio.Event()
        self._running = False
        # The tools' Helix client while another process holds the connection.
        self._lookup: tuple[Helix, TwitchUserInfo] | None = None
        self._lookup_lock = asyncio.Lock()

    # -- lifecycle -------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._running

    def start(self) -> None:
        """Run the connection in a task of its own (:meth:`run`); :meth:`stop` ends it."""
        if not self.config.configured:
            self.state = "not configured"
            return
        if self.running or (self._task is not None and not self._task.done()):
            return
        self.state = "starting"
        self._task = asyncio.create_task(self.run(), name="twitch-connection")

    async def run(self) -> None:
        """The supervising loop, in the calling task, until it is cancelled or meets an
        error retrying cannot fix (state ``failed``). The bot runs it as its run_once
        job, in the one process that follows Twitch."""
        if not self.config.configured:
            self.state = "not configured"
            return
        if self._running:
            raise RuntimeError("the Twitch connection is already running")
        self._running = True
        self.state = "starting"
        await self._close_lookup()
        try:
            await self._run()
        finally:
            self._running = False
            self._connected.clear()
            if self.helix is not None:
                await self.helix.close()
            if self.state != "failed":
                self.state = "stopped"

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.helix is not None:
            await self.helix.close()
        await self._close_lookup()
        if self.config.configured:
            self.state = "stopped"
        self._connected.clear()

    async def wait_connected(self, timeout: float | None = None) -> None:
        async with asyncio.timeout(timeout):
            await self._connected.wait()

    # -- lookups while another process holds the connection ----------------------

    async def lookup(self) -> tuple[Helix, TwitchUserInfo]:
        """Helix and the followed channel for the tools of a process that does not hold
        the connection (another process of the bot does: state ``standby``). The token
        is validated and the channel looked up once; the client is kept until this
        process starts or stops the connection."""
        async with self._lookup_lock:
            if self._lookup is None:
                helix = Helix(self.config)
                try:
                    token = await helix.validate()
                    await helix.open(token)
                    broadcaster = await self._broadcaster(helix)
                except BaseException:
                    await helix.close()
                    raise
                self._lookup = (helix, broadcaster)
            return self._lookup

    async def _close_lookup(self) -> None:
        lookup, self._lookup = self._lookup, None
        if lookup is not None:
            await lookup[0].close()

    async def _broadcaster(self, helix: Helix) -> TwitchUserInfo:
        settings = self.config.settings
        channel = settings.twitch_channel
        if settings.twitch_channel_id:
            return TwitchUserInfo(settings.twitch_channel_id, channel, channel)
        broadcaster = await helix.user(channel)
        if broadcaster is None:
            raise FatalTwitchError(
                f"TWITCH_CHANNEL {channel!r} is not a Twitch channel",
                provider="twitch",
            )
        return broadcaster

    # -- the supervising loop --------------------------------------------------

    def backoff(self, attempt: int) -> float:
        """Seconds before attempt ``attempt`` + 1: exponential, capped, with jitter."""
        settings = self.config.settings
        step = min(settings.backoff_max, settings.backoff_base * 2 ** max(0, attempt - 1))
        return step * random.uniform(0.75, 1.0)

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except FatalTwitchError as exc:
                self._set_down("failed", exc.message)
                log.error("Twitch: %s. Not retrying until the bot restarts.", exc.message)
                return
            except ProviderError as exc:
                status = f"HTTP {exc.status}" if isinstance(exc, ProviderStatusError) else ""
                reason = exc.message + (f" ({status})" if status not in exc.message else "")
            except Exception as exc:  # a bug here must not end the connection for good
                log.exception("twitch: unexpected error in the connection")
                reason = f"internal error ({type(exc).__name__})"
            healthy = self.connected_at is not None and (
                time.monotonic() - started >= HEALTHY_AFTER
            )
            self.attempt = 1 if healthy else self.attempt + 1
            delay = self.backoff(self.attempt)
            self.retry_delays.append(delay)
            self._set_down("reconnecting", reason)
            self.next_retry_at = time.time() + delay
            log.warning(
                "Twitch: %s; reconnecting in %.1fs (attempt %d)", reason, delay, self.attempt
            )
            await asyncio.sleep(delay)
            self.next_retry_at = None

    def _set_down(self, state: str, reason: str) -> None:
        self.state = state
        self.error = reason
        self.session_id = None
        self.connected_at = None
        self._connected.clear()
        for key, status in self.topics.items():
            if status == SUBSCRIBED:
                self.topics[key] = "not subscribed"

    async def _session(self) -> None:
        if self.helix is not None:
            await self.helix.close()
        helix = Helix(self.config)
        self.helix = helix
        try:
            await self._session_with(helix)
        finally:
            if self.state != "connected":
                await helix.close()

    async def _session_with(self, helix: Helix) -> None:
        token = await helix.validate()
        self.token = token
        self._check_scopes(token)
        await helix.open(token)
        settings = self.config.settings
        broadcaster = self.broadcaster = await self._broadcaster(helix)
        async with aiohttp.ClientSession() as http:
            session = EventSubSession(
                http,
                settings.eventsub_url,
                on_notification=self._notification,
                on_revocation=self._revocation,
                on_moved=self._moved,
                connect_timeout=settings.request_timeout,
            )
            try:
                session_id = await session.connect()
                await self._subscribe(helix, token, broadcaster, session_id)
                self.session_id = session_id
                self.connected_at = time.time()
                self.state = "connected"
                self.error = None
                self.sessions += 1
                self._connected.set()
                subscribed = [TOPIC_BY_TYPE[t].label for t in self._subscription_ids.values()]
                log.info(
                    "Twitch: connected to #%s (%s)",
                    broadcaster.login,
                    ", ".join(subscribed) or "no subscriptions",
                )
                await self._run_session(session, helix)
            finally:
                await session.close()

    async def _run_session(self, session: EventSubSession, helix: Helix) -> None:
        """Read the session and re-validate the token hourly; whichever ends first ends both."""
        tasks = {
            asyncio.create_task(session.run(), name="twitch-eventsub"),
            asyncio.create_task(self._revalidate(helix), name="twitch-validate"),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            task.result()  # re-raise why the session ended

    async def _revalidate(self, helix: Helix) -> None:
        while True:
            await asyncio.sleep(self.validate_every)
            try:
                token = await helix.validate()
            except FatalTwitchError:
                raise
            except ProviderError as exc:
                log.warning("Twitch: could not re-validate the token (%s)", exc.message)
                continue
            self.token = token
            self._check_scopes(token)

    def _check_scopes(self, token: TokenInfo) -> None:
        needed: dict[str, list[str]] = {}
        for topic in TOPICS:
            if topic.scope:
                needed.setdefault(topic.scope, []).append(topic.label)
        if self.config.settings.chat_replies:
            needed.setdefault(CHAT_WRITE_SCOPE, []).append("chat replies")
        missing = {scope: uses for scope, uses in needed.items() if scope not in token.scopes}
        if not missing:
            self.scope_error = None
            return
        scopes = ", ".join(missing)
        uses = ", ".join(dict.fromkeys(u for labels in missing.values() for u in labels))
        self.scope_error = (
            f"the Twitch token of {token.login} is missing the scope"
            f"{'s' if len(missing) > 1 else ''} {scopes} (needed for {uses}); "
            "authorize it again with them to get those events"
        )
        if self.scope_error != self._logged_scope_error:
            self._logged_scope_error = self.scope_error
            log.error("Twitch: %s.", self.scope_error)

    async def _subscribe(
        self, helix: Helix, token: TokenInfo, broadcaster: TwitchUserInfo, session_id: str
    ) -> None:
        self._subscription_ids = {}
        pending = []
        for topic in TOPICS:
            if topic.scope and topic.scope not in token.scopes:
                self.topics[topic.key] = f"missing scope {topic.scope}"
            else:
                pending.append(topic)
        # twitchAPI does not report every refusal (a create returns nothing, and after a
        # 429 it waits for the rate limit to reset but does not retry), so Twitch's own
        # list is the truth about what this session gets; what is missing is asked once more.
        for attempt in (1, 2):
            requested = []
            for topic in pending:
                condition = topic.condition(broadcaster.id, token.user_id)
                try:
                    await helix.subscribe(topic.type, topic.version, condition, session_id)
                except ProviderStatusError as exc:
                    if exc.status in (400, 403, 404, 409):
                        self.topics[topic.key] = f"refused by Twitch (HTTP {exc.status})"
                        log.warning(
                            "Twitch: the %s subscription was refused (HTTP %d)",
                            topic.type,
                            exc.status,
                        )
                        continue
                    raise
                requested.append(topic)
            try:
                listed = await helix.subscriptions()
            except ProviderError as exc:
                log.warning(
                    "Twitch: could not list subscriptions (%s); assuming they hold", exc.message
                )
                listed = None
            live = {
                sub["type"]: sub
                for sub in listed or []
                if sub.get("session_id") == session_id and sub.get("status") == "enabled"
            }
            pending = []
            for topic in requested:
                if listed is None or topic.type in live:
                    self.topics[topic.key] = SUBSCRIBED
                    sub_id = live.get(topic.type, {}).get("id") or topic.type
                    self._subscription_ids[sub_id] = topic.type
                elif attempt == 1:
                    pending.append(topic)
                else:
                    self.topics[topic.key] = "refused by Twitch"
                    log.warning("Twitch: the %s subscription was not accepted", topic.type)
            if not pending:
                return

    # -- session callbacks (synchronous, in the bot's loop) ----------------------

    def _notification(self, message: dict[str, Any]) -> None:
        event = parse_notification(message)
        if event is None:
            return
        self.last_event = event
        self.counts[event.kind] += 1
        if self.on_event is not None:
            self.on_event(event)

    def _revocation(self, message: dict[str, Any]) -> None:
        sub = (message.get("payload") or {}).get("subscription") or {}
        topic = TOPIC_BY_TYPE.get(str(sub.get("type")))
        reason = sub.get("status") or "revoked"
        self._subscription_ids.pop(str(sub.get("id")), None)
        if topic is None:
            return
        self.topics[topic.key] = f"revoked by Twitch ({reason})"
        log.warning("Twitch: the %s subscription was revoked (%s)", topic.type, reason)

    def _moved(self, session_id: str) -> None:
        self.session_id = session_id
        self.moves += 1

    # -- Twitch chat -------------------------------------------------------------

    @property
    def can_chat(self) -> bool:
        return (
            self.state == "connected"
            and self.helix is not None
            and self.token is not None
            and self.broadcaster is not None
            and CHAT_WRITE_SCOPE in self.token.scopes
        )

    async def send_chat(self, text: str, reply_to: str | None = None) -> str | None:
        """Post in the channel's chat as the token's user. Returns why it was not sent,
        or None when it was."""
        if not self.can_chat:
            return "not connected to Twitch chat"
        assert self.helix and self.token and self.broadcaster
        return await self.helix.send_chat(
            self.broadcaster.id, self.token.user_id, text, reply_to=reply_to
        )
