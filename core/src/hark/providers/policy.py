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
    """Per-provider call metrics: counts and a window of recent latencies."""

    calls: int = 0
    failures: int = 0
    retries: int = 0
    samples: deque[float] = field(default_factory=lambda: deque(maxlen=512))

    def record(self, seconds: float, ok: bool) -> None:
        self.calls += 1
        if not ok:
            self.failures += 1
        self.samples.append(seconds)

    def percentile(self, p: float) -> float | None:
        if not self.samples:
            return None
        ordered = sorted(self.samples)
        index = min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))
        return ordered[index]

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "calls": self.calls,
            "failures": self.failures,
            "retries": self.retries,
            "p50_s": self.percentile(50),
            "p99_s": self.percentile(99),
        }
