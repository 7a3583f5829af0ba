"""Retry policy and latency statistics shared by every provider."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

from hark.providers.errors import ProviderError, ProviderStatusError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter; a server's Retry-After wins when given."""

    attempts: int = 3  # total tries, including the first
    base_delay: float = 0.5
    max_delay: float = 8.0
    # A Retry-After longer than this is not waited out: the caller gets the error at once.
    max_retry_after: float = 30.0

    def delay(self, attempt: int, error: ProviderError) -> float | None:
        """Seconds to wait before try ``attempt + 1``, or None to give up."""
        if not error.retryable or attempt >= self.attempts:
            return None
        if isinstance(error, ProviderStatusError) and error.retry_after is not None:
            if error.retry_after > self.max_retry_after:
                return None
            return error.retry_after
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)


@dataclass(slots=True)
class LatencyStats:
    """Per-provider call metrics since start: counts, and windows of recent latencies.

    ``samples`` hold whole calls (a stream: until its end); ``first_samples`` the time
    to a stream's first item, which is what a conversation waits for. Shown by
    ``!plugins stats``.
    """

    calls: int = 0
    failures: int = 0
    retries: int = 0
    timeouts: int = 0
    samples: deque[float] = field(default_factory=lambda: deque(maxlen=512))
    first_samples: deque[float] = field(default_factory=lambda: deque(maxlen=512))

    def record(self, seconds: float, ok: bool, *, timed_out: bool = False) -> None:
        self.calls += 1
        if not ok:
            self.failures += 1
        if timed_out:
            self.timeouts += 1
        self.samples.append(seconds)

    def record_first(self, seconds: float) -> None:
        self.first_samples.append(seconds)

    def percentile(self, p: float, *, first: bool = False) -> float | None:
        window = self.first_samples if first else self.samples
        if not window:
            return None
        ordered = sorted(window)
        index = min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))
        return ordered[index]

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "calls": self.calls,
            "failures": self.failures,
            "retries": self.retries,
            "timeouts": self.timeouts,
            "p50_s": self.percentile(50),
            "p95_s": self.percentile(95),
            "first_p50_s": self.percentile(50, first=True),
            "first_p95_s": self.percentile(95, first=True),
        }
