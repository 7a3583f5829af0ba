"""Constants and helpers shared by this plugin's tests (a uniquely named module, so it
cannot clash with another package's test helpers when the whole repository is tested)."""

from __future__ import annotations

from hark.providers import RetryPolicy

# Looks like a real ElevenLabs key, so a leak would be unmistakable.
KEY = "sk_0123456789abcdef0123456789abcdef-TEST-KEY-never-log-me"
PLUGIN_ID = "tts_elevenlabs"
# Fast retries: the core's backoff logic is exercised, not waited out.
FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02, max_retry_after=5.0)
RACHEL = "21m00Tcm4TlvDq8ikWAM"
GEORGE = "JBFqnCBsd6RMkjVDRZzb"
