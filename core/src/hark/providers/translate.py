"""One translation of HTTP client exceptions into the provider error hierarchy.

Plugins talk to services through aiohttp, httpx or the openai client; each of
those raises its own exceptions for the same few events (could not connect, timed
out, the stream broke, an error status). :class:`ErrorTranslator` maps all of them
the same way, scrubs the plugin's secrets out of anything the server said, and
leaves service-specific statuses (a missing model, an empty quota) to a callback:

    errors = hark.api.ErrorTranslator("openrouter.ai", key_env="OPENROUTER_API_KEY",
                                      secrets=lambda: [self.api_key], timeout=60)
    try:
        ...
    except Exception as exc:
        raise errors.translate(exc, on_status=self._model_missing) from None

The client libraries are optional: none of them is imported here, an exception is
recognised by the module it comes from once that module is loaded.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hark.providers.errors import (
    BadOutputError,
    ConfigurationError,
    ProviderConnectionError,
    ProviderError,
    ProviderStatusError,
    ProviderTimeoutError,
    retry_after_from,
)

MAX_DETAIL = 200  # characters of a server's own message shown in an error


@dataclass(frozen=True, slots=True)
class HttpFailure:
    """An error status, whatever client received it: what ``on_status`` callbacks get."""

    status: int
    detail: str  # the server's message, scrubbed, one line, short ("" when none)
    code: str  # the server's machine-readable code (OpenAI's ``code``...), "" when none
    body: Any  # the parsed body when the client had one, else None
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names

    @property
    def retry_after(self) -> float | None:
        return retry_after_from(self.headers)


StatusHook = Callable[[HttpFailure], "ProviderError | None"]


def _module_class(module: str, name: str) -> type | None:
    loaded = sys.modules.get(module)
    cls = getattr(loaded, name, None) if loaded is not None else None
    return cls if isinstance(cls, type) else None


def _is(exc: BaseException, module: str, *names: str) -> bool:
    classes = tuple(c for n in names if (c := _module_class(module, n)) is not None)
    return bool(classes) and isinstance(exc, classes)


def _lower(headers: Any) -> dict[str, str]:
    try:
        return {str(k).lower(): str(v) for k, v in (headers or {}).items()}
    except AttributeError:
        return {}


def body_message(body: Any) -> tuple[str, str]:
    """(code, message) from the usual error bodies: ``{"error": {"message", "code"}}``,
    ``{"message"}``, ``{"detail": ...}`` (FastAPI, ElevenLabs), ``{"error": "text"}``
    or plain text."""
    if isinstance(body, Mapping):
        inner = body.get("error", body.get("detail", body))
        if isinstance(inner, list) and inner and isinstance(inner[0], Mapping):
            inner = inner[0]
        if isinstance(inner, Mapping):
            code = inner.get("code") or inner.get("status") or inner.get("type") or ""
            message = inner.get("message") or inner.get("msg") or ""
            return str(code), str(message)
        if isinstance(inner, str):
            return "", inner
        return "", str(body.get("message") or "")
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        try:
            parsed = json.loads(body)
        except ValueError:
            return "", body
        return body_message(parsed) if isinstance(parsed, Mapping) else ("", body)
    return "", ""


class ErrorTranslator:
    """Turns a client exception into the core's error for one service.

    ``service`` names it in messages ("openrouter.ai", "Ollama at http://gpu:11434");
    ``key_env`` is the variable an operator fixes on a 401/403; ``secrets`` (values or
    a callable returning them) are replaced by ``***`` in anything the server sent;
    ``timeout`` (seconds) is quoted when a request times out.
    """

    def __init__(
        self,
        service: str,
        *,
        key_env: str | None = None,
        secrets: Iterable[str] | Callable[[], Iterable[str]] = (),
        timeout: float | None = None,
    ) -> None:
        self.service = service
        self.key_env = key_env
        self.timeout = timeout
        self._secrets = secrets

    # -- server text ------------------------------------------------------

    def scrub(self, text: str) -> str:
        """A server-supplied message made safe to show: no secret, one line, short."""
        secrets = self._secrets() if callable(self._secrets) else self._secrets
        for secret in secrets:
            if secret:
                text = text.replace(secret, "***")
        text = " ".join(text.split())
        return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"

    def failure(self, status: int, body: Any, headers: Any = None) -> HttpFailure:
        code, message = body_message(body)
        return HttpFailure(
            status=status,
            detail=self.scrub(message),
            code=self.scrub(code),
            body=body,
            headers=_lower(headers),
        )

    # -- the common statuses ----------------------------------------------

    def status_error(
        self, failure: HttpFailure, *, has_key: bool = True, on_status: StatusHook | None = None
    ) -> ProviderError:
        """The error for an HTTP status: the plugin's own reading first, then the usual."""
        special = on_status(failure) if on_status is not None else None
        if special is not None:
            return special
        status, suffix = failure.status, (f": {failure.detail}" if failure.detail else "")
        if 200 <= status < 300:
            return BadOutputError(f"{self.service} sent a response that does not fit the API")
        if status in (401, 403):
            what = "the API key" if has_key else "the request without an API key"
            fix = f"; check {self.key_env}" if self.key_env else ""
            return ProviderStatusError(
                f"{self.service} rejected {what} (HTTP {status}){fix}{suffix}", status=status
            )
        return ProviderStatusError(
            f"{self.service} returned an error{suffix}",
            status=status,
            retry_after=failure.retry_after,
        )

    def timed_out(self) -> ProviderTimeoutError:
        within = f" within {self.timeout:g}s" if self.timeout else " in time"
        return ProviderTimeoutError(f"{self.service} did not answer{within}")

    def broken(self, *, produced: str = "", connected: bool = True) -> ProviderError:
        """The connection failed: before it was made, before the answer, or mid-answer.

        ``produced`` says what already reached the user ("after 120 characters"):
        the error is then not retryable (the user saw part of an answer).
        """
        if produced:
            return BadOutputError(f"the connection to {self.service} broke mid-reply, {produced}")
        if not connected:
            return ProviderConnectionError(f"could not connect to {self.service}")
        return ProviderConnectionError(f"the connection to {self.service} broke before the reply")

    # -- the exceptions ---------------------------------------------------

    def translate(
        self,
        exc: BaseException,
        *,
        produced: str = "",
        has_key: bool = True,
        connected: bool = False,
        on_status: StatusHook | None = None,
    ) -> BaseException:
        """The provider error for ``exc``; ``exc`` itself when it is none of the known
        client errors (the core then reports an internal error, without its text).

        ``connected``: the response had started (a stream was being read), so a
        connection error means it broke, not that it could not connect (the openai
        client raises the same APIConnectionError for both)."""
        if isinstance(exc, ProviderError):
            return exc
        for reader in (self._openai, self._httpx, self._aiohttp, self._builtin):
            error = reader(exc, produced, has_key, on_status, connected)
            if error is not None:
                return error
        return exc

    def _openai(self, exc, produced, has_key, on_status, connected) -> ProviderError | None:
        if not _is(exc, "openai", "OpenAIError"):
            return None
        if _is(exc, "openai", "APITimeoutError"):
            return self.timed_out() if not produced else self.broken(produced=produced)
        if _is(exc, "openai", "APIConnectionError"):
            return self.broken(produced=produced, connected=connected or bool(produced))
        if _is(exc, "openai", "APIStatusError"):
            response = exc.response  # type: ignore[attr-defined]
            failure = self.failure(exc.status_code, exc.body, response.headers)  # type: ignore[attr-defined]
            return self.status_error(failure, has_key=has_key, on_status=on_status)
        if _is(exc, "openai", "APIResponseValidationError"):
            return BadOutputError(f"{self.service} sent a response that does not fit the API")
        if _is(exc, "openai", "APIError"):
            # An error event inside a 200 stream (``data: {"error": {...}}``).
            return self.stream_error(exc.body, produced)  # type: ignore[attr-defined]
        return ProviderError(f"client error ({type(exc).__name__})")

    def stream_error(self, body: Any, produced: str = "") -> ProviderError:
        """An error the server reported inside a successful stream. An HTTP-like
        number in its ``code`` (OpenRouter's 502: the upstream model failed) makes it
        a status error; anything else is bad output."""
        code, message = body_message(body)
        detail = self.scrub(message) or "no details"
        where = produced or "before any text"
        status = int(code) if code.isdigit() else None
        if status is not None and 400 <= status <= 599:
            return ProviderStatusError(
                f"the model failed mid-stream {where}: {detail}", status=status
            )
        label = f" ({self.scrub(code)})" if code else ""
        return BadOutputError(f"the model failed mid-stream {where}{label}: {detail}")

    def _httpx(self, exc, produced, has_key, on_status, connected) -> ProviderError | None:
        # httpx2 is the fork that openai 3.x runs on: the same classes, another module.
        module = next(
            (m for m in ("httpx", "httpx2") if _is(exc, m, "HTTPError", "InvalidURL")), None
        )
        if module is None:
            return None
        if _is(exc, module, "ConnectTimeout"):
            return ProviderConnectionError(f"could not connect to {self.service} (timed out)")
        if _is(exc, module, "TimeoutException"):
            return self.timed_out() if not produced else self.broken(produced=produced)
        if _is(exc, module, "ConnectError"):
            return self.broken(connected=False)
        if _is(exc, module, "UnsupportedProtocol", "InvalidURL"):
            return ConfigurationError(f"{self.service} is not an http(s) address")
        if _is(exc, module, "HTTPStatusError"):
            response = exc.response  # type: ignore[attr-defined]
            try:
                body: Any = response.json()
            except Exception:  # not read, or not JSON
                body = getattr(response, "text", "") if response.is_stream_consumed else None
            failure = self.failure(response.status_code, body, response.headers)
            return self.status_error(failure, has_key=has_key, on_status=on_status)
        if _is(exc, module, "DecodingError"):
            return BadOutputError(f"{self.service} sent a malformed reply")
        if _is(exc, module, "TransportError"):
            return self.broken(produced=produced)
        return ProviderError(f"client error ({type(exc).__name__})")

    def _aiohttp(self, exc, produced, has_key, on_status, connected) -> ProviderError | None:
        if not _is(exc, "aiohttp", "ClientError"):
            return None
        if _is(exc, "aiohttp", "ClientConnectorError"):
            return self.broken(connected=False)
        if _is(exc, "aiohttp", "InvalidURL"):
            return ConfigurationError(f"{self.service} is not an http(s) address")
        if _is(exc, "aiohttp", "ContentTypeError"):
            return BadOutputError(f"{self.service} sent a malformed reply")
        if _is(exc, "aiohttp", "ClientResponseError"):
            failure = self.failure(exc.status, exc.message, exc.headers)  # type: ignore[attr-defined]
            return self.status_error(failure, has_key=has_key, on_status=on_status)
        if _is(exc, "aiohttp", "ServerTimeoutError"):
            return self.timed_out() if not produced else self.broken(produced=produced)
        return self.broken(produced=produced)

    def _builtin(self, exc, produced, has_key, on_status, connected) -> ProviderError | None:
        if isinstance(exc, TimeoutError):
            return self.timed_out() if not produced else self.broken(produced=produced)
        if isinstance(exc, ConnectionRefusedError):
            return self.broken(connected=False)
        if isinstance(exc, ConnectionError | OSError):
            return self.broken(produced=produced)
        if isinstance(exc, json.JSONDecodeError) or _is(exc, "pydantic", "ValidationError"):
            return BadOutputError(f"{self.service} sent a malformed reply")
        return None
