"""Per-user rate limit for LLM turns (cost control)."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field


def parse_rate(text: str | None) -> tuple[int, float] | None:
    """ "8/60" -> (8, 60.0); "0", "" or None -> None (no limit)."""
    if not text or text.strip() in ("0", "off", "none"):
        return None
    count, _, seconds = text.partition("/")
    try:
        parsed = int(count), float(seconds or 60)
    except ValueError:
        raise ValueError(f"CHAT_RATE_LIMIT must look like 8/60, not {text!r}") from None
    if parsed[0] <= 0 or parsed[1] <= 0:
        return None
    return parsed


@dataclass(slots=True)
class Verdict:
    allowed: bool
    retry_after: float = 0.0
    # True for the first refusal in a window: tell the user once, then stay quiet.
    notify: bool = False


@dataclass
class RateLimiter:
    limit: int
    per: float
    clock: object = time.monotonic
    _events: dict[int, deque[float]] = field(default_factory=dict)
    _notified: dict[int, float] = field(default_factory=dict)

    def _forget_idle(self, now: float) -> None:
        # Users whose window has passed need no entry: keeps memory bounded.
        idle = [uid for uid, ev in self._events.items() if not ev or now - ev[-1] >= self.per]
        for uid in idle:
            del self._events[uid]
            self._notified.pop(uid, None)

    def check(self, user_id: int) -> Verdict:
        now = self.clock()
        events = self._events.setdefault(user_id, deque())
        while events and now - events[0] >= self.per:
            events.popleft()
        if len(events) < self.limit:
            events.append(now)
            self._notified.pop(user_id, None)
            if len(self._events) > 4096:
                self._forget_idle(now)
            return Verdict(True)
        retry_after = self.per - (now - events[0])
        first = self._notified.get(user_id) != events[0]
        self._notified[user_id] = events[0]
        return Verdict(False, retry_after, notify=first)
