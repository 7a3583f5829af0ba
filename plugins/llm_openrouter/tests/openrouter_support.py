"""Constants and helpers shared by this plugin's tests (a uniquely named module, so it
cannot clash with another package's test helpers when the whole repository is tested)."""

from __future__ import annotations

from hark.providers import RetryPolicy

# Looks like a real OpenRouter key, so a leak would be unmistakable.
KEY = "sk-or-v1-0123456789abcdef-TEST-KEY-never-log-me-fedcba9876543210"
PLUGIN_ID = "llm_openrouter"
# Fast retries: the core's backoff logic is exercised, not waited out.
FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02, max_retry_after=5.0)
