"""``OpenAIWhisperTranscriber``: OpenAI's transcription API (``whisper-1``) for operators
without a CPU to spare, or any server speaking it (``OPENAI_BASE_URL``).

Each clip is converted to 16 kHz mono (a third of the upload of Discord's 48 kHz
stereo, and what Whisper resamples to anyway), wrapped as a WAV file in memory and
sent as ``POST {base}/audio/transcriptions`` (multipart: ``file``, ``model``,
``prompt``, ``language``, ``response_format=json``) with the official ``openai``
async client, its own retries off: the core retries (see :mod:`hark.providers.base`).

Every client error becomes one of the core's errors through the core's
:class:`hark.api.ErrorTranslator` (this module adds what a 404 and a 413 mean here),
and no message, log line or ``repr`` this module produces carries the API key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from hark import (
    AudioClip,
    BadOutputError,
    ConfigurationError,
    ProviderError,
    ProviderStatusError,
    Transcript,
)
from hark.api import ErrorTranslator, HttpFailure
from hark.audio import convert, wav_bytes
from hark_stt_whisper.base import WhisperTranscriber
from hark_stt_whisper.settings import OPENAI_KEY, WhisperSettings

if TYPE_CHECKING:
    import openai

#: Upload rate: Whisper works at 16 kHz whatever it is sent.
UPLOAD_RATE = 16_000
#: OpenAI refuses files over 25 MB (about 13 minutes of 16 kHz mono WAV).
MAX_UPLOAD_BYTES = 25 * 1024 * 1024
# Hosted APIs that refuse every request without a key; any other server (a local
# speaches / LocalAI / whisper.cpp server) may run without one.
KEYED_HOSTS = frozenset({"api.openai.com"})
PLACEHOLDER_KEY = "no-key"
#: Seconds warm() waits for its connection-opening request.
WARM_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the API is and how to reach it: the key (``OPENAI_API_KEY``) and the
    bot-wide ``openai_base_url`` / ``openai_timeout`` settings."""

    base_url: str
    timeout: float
    api_key: str = field(default="", repr=False)


class OpenAIWhisperTranscriber(WhisperTranscriber):
    """Speech to text through OpenAI's ``/audio/transcriptions`` endpoint."""

    name = "openai"
    mode = "openai"
    preferred_sample_rate = UPLOAD_RATE

    def __init__(self, *, environ: Mapping[str, str] | None = None) -> None:
        """The key comes from ``OPENAI_API_KEY`` and the endpoint from the plugin's
        settings; ``environ`` stands for ``os.environ`` for both (scripts, tests)."""
        super().__init__(environ=environ)
        self._client: tuple[Endpoint, openai.AsyncOpenAI] | None = None
        self._retired: list[openai.AsyncOpenAI] = []

    # -- configuration ----------------------------------------------------

    @property
    def config(self) -> Endpoint:
        """The endpoint now (read again on every use: the key and the settings may change)."""
        # OPENAI_KEY.value registers the key with the bot's log redaction (a second line
        # of defence: nothing here logs the key in the first place).
        settings = self.bot_wide()
        return Endpoint(
            base_url=settings.openai_base_url,
            timeout=settings.openai_timeout,
            api_key=OPENAI_KEY.value(self.environ),
        )

    @property
    def timeout(self) -> float:  # type: ignore[override]  # the core's per-call deadline
        return self.bot_wide().openai_timeout

    @property
    def has_key(self) -> bool:
        return OPENAI_KEY.is_set(self.environ)

    @property
    def host(self) -> str:
        """The endpoint's host (and port): how messages name the service."""
        base_url = self.bot_wide().openai_base_url
        return urlsplit(base_url).netloc.rsplit("@", 1)[-1] or base_url

    @property
    def public_base_url(self) -> str:
        """The base URL fit to show or log: no ``user:password@``, no query string."""
        parts = urlsplit(self.bot_wide().openai_base_url)
        return f"{parts.scheme}://{self.host}{parts.path}" if parts.scheme else self.host

    @property
    def needs_key(self) -> bool:
        return (urlsplit(self.bot_wide().openai_base_url).hostname or "").lower() in KEYED_HOSTS

    def unavailable_reason(self) -> str | None:
        if self.needs_key and not self.has_key:
            return "OPENAI_API_KEY is not set"
        return None

    @staticmethod
    def model_for(settings: WhisperSettings) -> str:
        return settings.openai_model

    def client(self) -> openai.AsyncOpenAI:
        """The shared async client (made on first use, and again when the key or the
        endpoint changed)."""
        reason = self.unavailable_reason()
        if reason:
            raise ConfigurationError(f"{reason}: the OpenAI transcriber can't be used")
        endpoint = self.config
        if self._client is not None and self._client[0] == endpoint:
            return self._client[1]
        if self._client is not None:
            self._retired.append(self._client[1])  # calls may still use it: closed at aclose()
        import openai  # on first use: the SDK is ~15 MB that a local-only bot never needs

        client = openai.AsyncOpenAI(
            api_key=endpoint.api_key or PLACEHOLDER_KEY,
            base_url=endpoint.base_url,
            max_retries=0,  # the core retries
            timeout=openai.Timeout(endpoint.timeout, connect=min(10.0, endpoint.timeout)),
        )
        self._client = (endpoint, client)
        return client

    async def warm(self) -> None:
        """Open the connection pool with ``GET {base}/models`` (small; OpenAI, speaches
        and LocalAI all serve it), so the first clip does not pay for the TCP/TLS
        handshake. Any answer, even an error status, leaves a connection open. Never
        raises: a failure is logged at DEBUG."""
        if self.unavailable_reason() is not None:
            return
        try:
            async with asyncio.timeout(WARM_TIMEOUT):
                await self.client().models.list()
        except Exception as exc:
            self.log.debug("warm-up of %s failed (%s)", self.host, type(exc).__name__)
        else:
            self.log.debug("warmed the connection to %s", self.host)

    async def aclose(self) -> None:
        """Close the HTTP connection pools (the next call opens a new one)."""
        current, self._client = self._client, None
        clients, self._retired = self._retired, []
        for client in [*clients, *([current[1]] if current else [])]:
            await client.close()

    def __repr__(self) -> str:  # never the key
        return f"<{type(self).__name__} {self.id} {self.public_base_url}>"

    # -- transcription ----------------------------------------------------

    @staticmethod
    def wav(clip: AudioClip) -> bytes:
        """The clip as a 16 kHz mono WAV file."""
        return wav_bytes([convert(clip, UPLOAD_RATE, 1)])

    def _upload(self, clip: AudioClip, settings: WhisperSettings) -> bytes | None:
        return None if self.is_silence(clip, settings) else self.wav(clip)

    async def _impl(
        self,
        clip: AudioClip,
        *,
        language: str | None,
        prompt: str | None,
        guild_id: int | None,
        settings: WhisperSettings | None = None,
    ) -> Transcript:
        settings = settings or self.bot_wide()
        language = self.language_for(settings, language)
        client = self.client()
        model = self.model_for(settings)
        # Off the loop: the level check and the conversion touch every sample.
        data = await asyncio.to_thread(self._upload, clip, settings)
        if data is None:  # silence: nothing worth paying for
            return Transcript("", language=language, duration=clip.duration)
        if len(data) > MAX_UPLOAD_BYTES:
            raise BadOutputError(
                f"the clip is too long to upload ({clip.duration:.0f}s; the API takes 25 MB)"
            )
        params: dict[str, object] = {
            "model": model,
            "file": ("speech.wav", data, "audio/wav"),
            "response_format": "json",
        }
        prompt = (prompt or "").strip()
        if prompt:
            params["prompt"] = prompt
        if language:
            params["language"] = language
        self.log.debug(
            "POST %s/audio/transcriptions model=%s %.2fs language=%s",
            self.public_base_url,
            model,
            clip.duration,
            language or "auto",
        )
        try:
            result = await client.audio.transcriptions.create(**params)
        except ValueError:  # a 200 whose body is not the JSON it claims to be
            raise BadOutputError(f"{self.host} sent a transcription that is not JSON") from None
        except Exception as exc:
            raise self.errors.translate(
                exc, has_key=self.has_key, on_status=lambda failure: self._status(failure, model)
            ) from None
        if isinstance(result, str):
            # What the client returns for a 200 that is not JSON (an HTML page from a proxy
            # or captive portal): the raw body, which must not pass for a transcript.
            raise BadOutputError(f"{self.host} sent a transcription that is not JSON")
        text = getattr(result, "text", None)
        if not isinstance(text, str):
            raise BadOutputError(f"{self.host} sent a transcription without text")
        return Transcript(text.strip(), language=language, duration=clip.duration)

    # -- errors -----------------------------------------------------------

    @property
    def errors(self) -> ErrorTranslator:
        """The core's reading of client errors, for the endpoint and timeout in force
        (both are settings, so it is made on use). Neither the key nor a password in
        the base URL survives in anything the server said."""
        return ErrorTranslator(
            self.host,
            key_env=OPENAI_KEY.env,
            secrets=lambda: [
                OPENAI_KEY.value(self.environ),
                urlsplit(self.bot_wide().openai_base_url).password or "",
            ],
            timeout=self.timeout,
        )

    def _status(self, failure: HttpFailure, model: str) -> ProviderError | None:
        """What a 404 (the model) and a 413 (the clip) mean here; the rest reads as usual."""
        if failure.status == 404:
            return ConfigurationError(
                f"the transcription model `{model}` was not found at {self.host}; set another"
                " with `!config stt_whisper openai_model NAME` or WHISPER_OPENAI_MODEL, or check"
                " OPENAI_BASE_URL"
            )
        if failure.status == 413:
            detail = f": {failure.detail}" if failure.detail else ""
            return ProviderStatusError(
                f"{self.host} refused the clip as too large{detail}", status=413
            )
        return None
