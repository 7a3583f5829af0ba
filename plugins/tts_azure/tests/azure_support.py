"""Constants and helpers shared by this plugin's tests (a uniquely named module, so it
cannot clash with another package's test helpers when the whole repository is tested)."""

from __future__ import annotations

import numpy as np

from hark.providers import RetryPolicy

# Looks like a real Azure Speech key (32 hex digits), so a leak would be unmistakable.
KEY = "5c0ffee0d15ea5e0badc0de0f00dcafe"
PLUGIN_ID = "tts_azure"
# Fast retries: the core's backoff logic is exercised, not waited out.
FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02, max_retry_after=5.0)


def stereo(mono: bytes) -> bytes:
    """Mono s16le duplicated into both channels (what Discord gets from the plugin)."""
    samples = np.frombuffer(mono, dtype="<i2")
    return np.repeat(samples, 2).astype("<i2").tobytes()


def joined(clips) -> bytes:
    return b"".join(c.pcm for c in clips)
