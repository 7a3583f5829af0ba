"""Recent stream activity (events and chat) as a part of every prompt, and the
stream events each Discord server has seen, for the ``twitch_recent_events`` tool.

:class:`ActivityLog` is a bounded, time-windowed memory of the last events; the
:class:`TwitchActivityContext` provider turns it into one system message
("Recent Twitch activity: ...") with the live-events order (40), so the bot can
answer "who just raided?" in Discord. :class:`RecentEvents` keeps the last few
stream events (no chat) per server, without a time window; both live in memory
only and start empty when the bot starts.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from hark import ContextPart, ContextProvider, ContextRequest, PromptMessage
from hark_twitch.events import TwitchEvent
from hark_twitch.settings import TwitchSettings

DEFAULT_MAX_EVENTS = 25
DEFAULT_WINDOW = 600.0  # seconds
# Events kept per Discord server for the recent-events tool (its largest ``count``).
RECENT_PER_SERVER = 20


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return "just now" if seconds < 10 else f"{seconds}s ago"
    minutes = seconds // 60
    return f"{minutes} min ago"


class ActivityLog:
    """The last ``max_events`` Twitch events no older than ``window`` seconds."""

    def __init__(
        self,
        max_events: int = DEFAULT_MAX_EVENTS,
        window: float = DEFAULT_WINDOW,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.window = window
        self.clock = clock
        self._events: deque[TwitchEvent] = deque(maxlen=max_events)
        # Whose channel this is ("twitch.tv/NAME"), once known.
        self.channel: str | None = None

    def add(self, event: TwitchEvent) -> None:
        self._events.append(event)

    def recent(self) -> list[TwitchEvent]:
        cutoff = self.clock() - self.window
        return [e for e in self._events if e.at >= cutoff]

    def clear(self) -> None:
        self._events.clear()

    def __len__(self) -> int:
        return len(self.recent())

    def render(self, *, exclude: str | None = None) -> str | None:
        """The recent activity as text (None when there is none)."""
        now = self.clock()
        lines = [
            f"- {_ago(now - e.at)}: {e.text}"
            for e in self.recent()
            if not (exclude and e.message_id == exclude)
        ]
        if not lines:
            return None
        where = f" on twitch.tv/{self.channel}" if self.channel else ""
        return (
            f"Recent Twitch activity{where} (the stream this server follows; oldest first):\n"
            + "\n".join(lines)
        )


class RecentEvents:
    """The last ``per_server`` stream events of each Discord server (a ring buffer each).

    A server gets an event only while the plugin is on there, so what one server
    reads is what it saw. ``None`` is the bot-wide ring (every event), for turns
    outside a server: a DM, Twitch chat, ``bot console``. Memory stays bounded:
    ``per_server`` events for each server the bot is in (:meth:`keep_only` drops
    the servers the bot left).
    """

    def __init__(self, per_server: int = RECENT_PER_SERVER) -> None:
        self.per_server = per_server
        self._rings: dict[int | None, deque[TwitchEvent]] = {}

    def add(self, guild_id: int | None, event: TwitchEvent) -> None:
        ring = self._rings.get(guild_id)
        if ring is None:
            ring = self._rings[guild_id] = deque(maxlen=self.per_server)
        ring.append(event)

    def latest(self, guild_id: int | None, count: int) -> list[TwitchEvent]:
        """Up to ``count`` events of ``guild_id``, newest first."""
        ring = self._rings.get(guild_id)
        if not ring or count <= 0:
            return []
        return list(reversed(ring))[:count]

    def keep_only(self, guild_ids: set[int]) -> None:
        """Drop the rings of servers not in ``guild_ids`` (the bot-wide one stays)."""
        for guild_id in [g for g in self._rings if g is not None and g not in guild_ids]:
            del self._rings[guild_id]

    def servers(self) -> list[int | None]:
        return list(self._rings)


class TwitchActivityContext(ContextProvider):
    """Recent Twitch events and chat lines, for every turn where the plugin is enabled."""

    name = "activity"
    timeout = 0.5
    # Outside a bot (tests, scripts), settings come from the defaults and the environment.
    settings_model = TwitchSettings

    def __init__(self, log: ActivityLog | None = None) -> None:
        super().__init__()
        self.activity = log or ActivityLog()

    async def _impl(
        self, request: ContextRequest, *, settings: TwitchSettings
    ) -> ContextPart | None:
        # A commentary turn already states its own event as the message: leave it out here.
        text = self.activity.render(exclude=request.extra.get("twitch_message_id"))
        if text is None:
            return None
        return ContextPart([PromptMessage("system", text)], order=40)
