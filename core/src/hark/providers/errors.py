"""One error hierarchy for every provider, whatever service is behind it.

Plugins translate their client library's exceptions into these; the core decides
from them whether to retry, how long to wait, and what short notice to show.
Messages must never contain secrets: they reach logs and, via ``user_message``,
Discord channels.
"""

from __future__ import annotations

from collections.abc import Mapping


class ProviderError(Exception):
    """Base class. Not retryable unless a subclass says so."""

    retryable: bool = False

    def __init__(self, message: str, *, provider: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider

    @property
    def user_message(self) -> str:
        """One short sentence fit for a Discord channel."""
        who = f"`{self.provider}`" if self.provider else "the provider"
        return f"Sorry, {who} failed: {self.message}"

    def __str__(self) -> str:
        return f"[{self.provider}] {self.message}" if self.provider else self.message


class ProviderConnectionError(ProviderError):
    """The service could not be reached (refused, DNS, reset, TLS)."""

    retryable = True

    @property
    def user_message(self) -> str:
        who = f"`{self.provider}`" if self.provider else "the provider"
        return f"Sorry, I couldn't reach {who} right now. Please try again in a moment."


class ProviderTimeoutError(ProviderError):
    """The service did not answer (or stopped streaming) within the deadline."""

    retryable = True

    @property
    def user_message(self) -> str:
        who = f"`{self.provider}`" if self.provider else "the provider"
        return f"Sorry, {who} took too long to answer. Please try again."


class ProviderStatusError(ProviderError):
    """The service answered with an HTTP error status."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        retry_after: float | None = None,
        provider: str | None = None,
    ) -> None:
        super().__init__(message, provider=provider)
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return self.status in (408, 425, 429) or self.status >= 500

    @property
    def user_message(self) -> str:
        who = f"`{self.provider}`" if self.provider else "the provider"
        if self.status in (401, 403):
            return (
                f"Sorry, {who} rejected the bot's credentials. An operator needs to check its key."
            )
        if self.status == 429:
            return f"Sorry, {who} is rate-limiting me. Please try again shortly."
        if self.status >= 500:
            return f"Sorry, {who} is having trouble (HTTP {self.status}). Please try again later."
        return f"Sorry, {who} refused the request (HTTP {self.status}): {self.message}"

    def __str__(self) -> str:
        return f"{super().__str__()} (HTTP {self.status})"


class BadOutputError(ProviderError):
    """The service answered, but with something unusable (malformed stream, empty audio)."""

    @property
    def user_message(self) -> str:
        who = f"`{self.provider}`" if self.provider else "the provider"
        return f"Sorry, {who} sent back something I couldn't use."


class ConfigurationError(ProviderError):
    """The provider is not set up: a missing key, model or setting. Never retried."""

    @property
    def user_message(self) -> str:
        return f"Sorry, {self.message}"


def parse_retry_after(value: str | float | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds form) or a numeric field."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        # The HTTP-date form is legal but rare from APIs; let the backoff decide.
        return None
    return max(0.0, seconds)


def retry_after_from(headers: Mapping[str, str]) -> float | None:
    """Seconds from a response's ``Retry-After`` header, else from ``retry-after-ms``
    (milliseconds, as OpenAI-style APIs and ElevenLabs send it); None when neither parses.

    Names are looked up in lower case: pass a case-insensitive mapping (httpx,
    aiohttp and multidict headers are) or one with lower-case keys."""
    seconds = parse_retry_after(headers.get("retry-after"))
    if seconds is None and headers.get("retry-after-ms"):
        ms = parse_retry_after(headers.get("retry-after-ms"))
        seconds = None if ms is None else ms / 1000
    return seconds
