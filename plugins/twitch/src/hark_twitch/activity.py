"""Recent stream activity (events and chat) as a part of every prompt.

:class:`ActivityLog` is a bounded, time-windowed memory of the last events; the
:class:`TwitchActivityContext` provider turns it into one system message
("Recent Twitch activity: ...") with the live-events order (40), so the bot can
answer "who just raided?" in Discord.
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
