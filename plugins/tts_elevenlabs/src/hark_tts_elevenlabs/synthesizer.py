"""``ElevenLabsSynthesizer``: ElevenLabs text to speech, streamed into Discord's format.

Speech is requested as raw 16-bit PCM at 22,050 Hz mono (``output_format=pcm_22050``)
from ``POST /v1/text-to-speech/{voice_id}/stream`` through the official
``elevenlabs`` async client, and converted chunk by chunk, as it arrives, to
Discord's 48 kHz stereo with :class:`hark.audio.StreamResampler` (which keeps the
filter state across chunks, so chunk boundaries make no clicks). HTTP chunks may
split a sample in two: the odd byte is kept for the next chunk of the same request
(:class:`PcmAligner`), and a request's stray last byte is dropped rather than glued
to the next request's audio, which would shift every sample after it.

Text longer than ElevenLabs' per-request limit is cut at sentence boundaries
(:func:`hark_tts_elevenlabs.text.split_for_requests`) and sent as several
requests, one after the other, their audio streamed in order through one
resampler. A request after the first that fails before sending any audio is
retried here (its audio would not duplicate anything); the core retries the
whole call only while nothing has been yielded.

The client's own retries are off (``max_retries=0``): the core retries. The
core's :class:`hark.api.ErrorTranslator` turns httpx's errors into the core's
hierarchy; this module adds the client's ``ApiError`` and what is ElevenLabs' own
(quota, an unknown voice or model). No message, log line or ``repr`` carries the
API key.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import hark
from hark import (
    AudioClip,
    BadOutputError,
    ConfigurationError,
    ProviderError,
    Synthesizer,
)
from hark.api import ErrorTranslator, HttpFailure
from hark.audio import DISCORD_CHANNELS, DISCORD_RATE, StreamResampler
from hark_tts_elevenlabs.settings import (
    DEFAULT_BASE_URL,
    DEFAULT_MODEL,
    DEFAULT_TIMEOUT,
    ELEVENLABS_KEY,
    ElevenLabsSettings,
)
from hark_tts_elevenlabs.text import REQUEST_CHAR_LIMIT, split_for_requests

if TYPE_CHECKING:
    import httpx
    from elevenlabs.client import AsyncElevenLabs
    from elevenlabs.types import VoiceSettings


# The SDK (and httpx with it, ~25 MB) loads when the first client is made or the first
# error is read, not with the plugin: `bot plugins` and a bot that never speaks skip it.
@functools.cache
def _sdk_errors() -> tuple[type[Exception], type[Exception] | None]:
    """The client's ``ApiError``, and ``ParsingError`` where the client has one."""
    from elevenlabs.core.api_error import ApiError

    try:  # newer clients raise this when a response does not fit the API's schema
        from elevenlabs.core.parse_error import ParsingError
    except ImportError:  # pragma: no cover - older 2.x clients
        return ApiError, None
    return ApiError, ParsingError


__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MODEL",
    "OUTPUT_FORMAT",
    "SOURCE_RATE",
    "ElevenLabsSynthesizer",
    "PcmAligner",
    "VoiceInfo",
    "voice_settings",
]

#: Seconds warm() waits for its connection-opening request.
WARM_TIMEOUT = 10.0
#: What ElevenLabs is asked for: raw s16le mono PCM at 22,050 Hz (every plan has it).
SOURCE_RATE = 22_050
OUTPUT_FORMAT = f"pcm_{SOURCE_RATE}"

# Voices listed by `!elevenlabs voices`: pages of the v2 listing, at most this many pages.
VOICES_PAGE_SIZE = 100
MAX_VOICE_PAGES = 10

# HTTP chunks are handed on as they arrive (no re-chunking to a fixed size), so the
# first audio is not held back waiting for a full buffer.
_REQUEST_OPTIONS: dict[str, Any] = {"max_retries": 0, "chunk_size": None}


@dataclass(frozen=True, slots=True)
class VoiceInfo:
    """A voice as ElevenLabs lists it."""

    voice_id: str
    name: str
    category: str | None = None
    #: The voice's label values (accent, gender, age, use case...), for filtering.
    labels: tuple[str, ...] = ()

    @classmethod
    def from_api(cls, voice: Any) -> VoiceInfo:
        """From the client's ``Voice`` model."""
        raw = getattr(voice, "labels", None) or {}
        labels = tuple(str(v) for v in raw.values() if v) if isinstance(raw, Mapping) else ()
        name = getattr(voice, "name", None) or voice.voice_id
        return cls(voice.voice_id, name, getattr(voice, "category", None), labels)


class PcmAligner:
    """Re-cuts one response's bytes into whole 16-bit samples, keeping a split sample's
    first byte for the next chunk (HTTP does not know about samples).

    One per request: the resampler is shared by every request of a long text, so
    alignment is settled here, where a response's end is known.
    """

    def __init__(self) -> None:
        self._carry = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._carry + chunk if self._carry else chunk
        cut = len(data) - (len(data) & 1)
        self._carry = data[cut:]
        return data[:cut]

    @property
    def pending(self) -> int:
        """Bytes held back (0 or 1)."""
        return len(self._carry)


def voice_settings(settings: ElevenLabsSettings) -> VoiceSettings:
    """The voice settings sent with each request (``speed`` only when one is set)."""
    from elevenlabs.types import VoiceSettings

    values: dict[str, Any] = {
        "stability": settings.stability,
        "similarity_boost": settings.similarity_boost,
        "style": settings.style,
        "use_speaker_boost": settings.use_speaker_boost,
    }
    if settings.speed is not None:
        values["speed"] = settings.speed
    return VoiceSettings(**values)


class ElevenLabsSynthesizer(Synthesizer):
    """ElevenLabs voices, streamed as 48 kHz stereo s16le clips."""

    # Discord's format: the player takes the clips as they are.
    sample_rate = DISCORD_RATE
    channels = DISCORD_CHANNELS
    # A configured cloud voice ranks above local fallback voices for default selection.
    default_priority = 10
    # This plugin splits long text itself (at REQUEST_CHAR_LIMIT, retrying a failed
    # piece on its own), so the core passes any length through in one call.
    max_text_length = 1_000_000
    # Used outside a bot (tests, scripts); in the bot the plugin's declaration.
    settings_model = ElevenLabsSettings

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float | None = None,
        max_request_chars: int = REQUEST_CHAR_LIMIT,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """The key comes from ``ELEVENLABS_API_KEY`` and the rest from the plugin's
        settings (``environ`` is their environment layer); arguments given here
        win over both (for scripts and tests)."""
        super().__init__()
        self.environ = environ
        self._api_key = (ELEVENLABS_KEY.value(environ) if api_key is None else api_key).strip()
        # The bot's log formatter replaces registered secrets with *** (a second line
        # of defence: nothing here logs the key in the first place).
        hark.register_secret(self._api_key)
        given = {"base_url": base_url, "timeout": timeout}
        self._fixed: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        if max_request_chars < 1:
            raise ValueError("max_request_chars must be positive")
        self.max_request_chars = max_request_chars
        self._client: AsyncElevenLabs | None = None
        self._http: httpx.AsyncClient | None = None
        self._client_for: tuple[str, float] | None = None
        # Pools of clients replaced after a bot-wide change, closed by aclose().
        self._retired: list[httpx.AsyncClient] = []
        self._errors: tuple[tuple[str, float], ErrorTranslator] | None = None

    # -- configuration ---------------------------------------------------

    def bot_wide(self) -> ElevenLabsSettings:
        """The bot-wide settings (where the API is, the default voice and model)."""
        resolved = self.resolve()
        assert resolved is not None
        return self._with_fixed(resolved.values)

    def _with_fixed(self, settings: ElevenLabsSettings) -> ElevenLabsSettings:
        if not self._fixed:
            return settings
        fixed = dict(self._fixed)
        if "base_url" in fixed:
            fixed["base_url"] = str(fixed["base_url"]).strip().rstrip("/")
        if "timeout" in fixed:
            timeout = float(fixed["timeout"])
            usable = timeout > 0 and math.isfinite(timeout)
            fixed["timeout"] = timeout if usable else DEFAULT_TIMEOUT
        return settings.model_copy(update=fixed)

    @property
    def timeout(self) -> float:  # the core's per-chunk deadline and the HTTP read timeout
        return self.bot_wide().timeout

    @timeout.setter
    def timeout(self, value: float) -> None:
        self._fixed["timeout"] = value

    @property
    def base_url(self) -> str:
        return self.bot_wide().base_url

    @property
    def default_voice_id(self) -> str | None:
        """The bot-wide voice (``ELEVENLABS_VOICE_ID``, bot.toml or the owner's)."""
        return self.bot_wide().voice_id

    @property
    def default_model(self) -> str:
        return self.bot_wide().model

    @property
    def host(self) -> str:
        """The API's host (and port): how messages name the service."""
        base_url = self.base_url
        parts = urlsplit(base_url)
        return parts.netloc.rsplit("@", 1)[-1] or base_url

    @property
    def service(self) -> str:
        """How messages name the service: "ElevenLabs", or "ElevenLabs at HOST" elsewhere."""
        host = (urlsplit(self.base_url).hostname or "").lower()
        if host == "elevenlabs.io" or host.endswith(".elevenlabs.io"):
            return "ElevenLabs"
        return f"ElevenLabs at {self.host}"

    @property
    def public_base_url(self) -> str:
        """``base_url`` fit to show or log: without any ``user:password@`` or query."""
        base_url = self.base_url
        parts = urlsplit(base_url)
        return f"{parts.scheme}://{self.host}{parts.path}" if parts.scheme else base_url

    @property
    def has_key(self) -> bool:
        return bool(self._api_key)

    def unavailable_reason(self) -> str | None:
        if not self.has_key:
            return "ELEVENLABS_API_KEY is not set"
        if not self.default_voice_id:
            return (
                "no voice is chosen: set ELEVENLABS_VOICE_ID"
                " or `!config tts_elevenlabs voice_id NAME`"
            )
        return None

    async def check_setting(self, key: str, value: Any) -> Any:
        """`!config tts_elevenlabs voice_id NAME`: a voice by id or by name (any case),
        stored as its id; one the account can't use is refused (it would fail every
        later synthesis)."""
        if key != "voice_id":
            return value
        if value is None:
            raise ValueError(
                "choose a voice (`!elevenlabs voices` lists them), or `reset` to inherit one"
            )
        found = await self.find_voice(value)
        if isinstance(found, list):
            listed = ", ".join(f"{v.name} `{v.voice_id}`" for v in found[:10])
            raise ValueError(f"several voices are called `{value}`: {listed}; choose one by id")
        if found is None:
            raise ValueError(
                f"{self.service} has no voice `{value}`; `!elevenlabs voices` lists them"
            )
        return found.voice_id

    async def find_voice(self, name: str) -> VoiceInfo | list[VoiceInfo] | None:
        """A voice by id, else by name (case-insensitive); a list when a name is ambiguous."""
        voices = await self.list_voices()
        for voice in voices:
            if voice.voice_id == name:
                return voice
        named = [v for v in voices if v.name.casefold() == name.casefold()]
        if len(named) == 1:
            return named[0]
        if named:
            return named
        if name.isalnum():
            # A voice the listing leaves out (e.g. from the shared library) is still usable.
            return await self.get_voice(name)
        return None

    def client(self, settings: ElevenLabsSettings | None = None) -> AsyncElevenLabs:
        """The shared async client (created on first use, and again when the bot-wide
        base URL or timeout changes)."""
        if not self.has_key:
            raise ConfigurationError("ELEVENLABS_API_KEY is not set")
        settings = settings or self.bot_wide()
        wanted = (settings.base_url, settings.timeout)
        if self._client is None or self._client_for != wanted:
            if self._http is not None:
                self._retired.append(self._http)  # a stream may still be reading from it
            base_url, timeout = wanted
            import httpx
            from elevenlabs.client import AsyncElevenLabs

            # The plugin owns the httpx client, so aclose() can close its connections.
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
                follow_redirects=True,
            )
            self._client = AsyncElevenLabs(
                api_key=self._api_key,
                base_url=base_url,
                timeout=timeout,
                httpx_client=self._http,
            )
            self._client_for = wanted
        return self._client

    async def warm(self) -> None:
        """Open the connection pool with ``GET /v1/voices/{voice_id}`` for the default
        voice (a small answer), so the first reply does not pay for the TCP/TLS
        handshake. Never raises: a failure is logged at DEBUG."""
        if self.unavailable_reason() is not None:
            return
        voice = self.default_voice_id or ""
        options: Any = _REQUEST_OPTIONS
        try:
            async with asyncio.timeout(WARM_TIMEOUT):
                await self.client().voices.get(voice, request_options=options)
        except Exception as exc:
            self.log.debug("warm-up of %s failed (%s)", self.service, type(exc).__name__)
        else:
            self.log.debug("warmed the connection to %s", self.service)

    async def aclose(self) -> None:
        """Close the HTTP connection pool (the next call opens a new one)."""
        pools = [*self._retired, self._http]
        self._retired, self._http, self._client, self._client_for = [], None, None, None
        for http in pools:
            if http is not None:
                await http.aclose()

    def __repr__(self) -> str:  # never the key
        return f"<{type(self).__name__} {self.id} {self.public_base_url}>"

    # -- synthesis -------------------------------------------------------

    async def _impl(
        self,
        text: str,
        *,
        guild_id: int | None,
        settings: ElevenLabsSettings,
    ) -> AsyncIterator[AudioClip]:
        """``settings`` are this server's (the core resolved them for the call)."""
        segments = split_for_requests(text, self.max_request_chars)
        if not segments:
            return  # blank text: no audio, no request
        settings = self._with_fixed(settings)
        client = self.client(settings)
        voice_id = settings.voice_id
        if not voice_id:
            raise ConfigurationError(
                "no ElevenLabs voice is chosen: set ELEVENLABS_VOICE_ID or use"
                " `!config tts_elevenlabs voice_id NAME`"
            )
        model = settings.model
        request_settings = voice_settings(settings)
        resampler = StreamResampler(SOURCE_RATE, 1, self.sample_rate, self.channels)
        yielded = False
        source_bytes = 0  # PCM received over all requests, for messages
        if len(segments) > 1:
            self.log.debug(
                "%d characters sent as %d requests of at most %d",
                len(text),
                len(segments),
                self.max_request_chars,
            )
        for index, segment in enumerate(segments):
            attempt = 0
            while True:
                attempt += 1
                received = 0
                try:
                    request = self._request(client, segment, voice_id, model, request_settings)
                    async with contextlib.aclosing(request):
                        async for pcm in request:
                            received += len(pcm)
                            clip = resampler.feed(pcm)
                            if clip.pcm:
                                yielded = True
                                yield clip
                except Exception as exc:
                    # Once part of this request's audio was played, a break is final:
                    # replaying the request would repeat it.
                    played = source_bytes + received if yielded and received else 0
                    produced = f"after {played / 2 / SOURCE_RATE:.2f}s of speech" if played else ""
                    error = self.translate(exc, voice_id=voice_id, model=model, produced=produced)
                    if not yielded or not isinstance(error, ProviderError):
                        # Nothing reached the caller: the core may retry the whole call.
                        raise error from None
                    self._note_partial(error, source_bytes + received, index, len(segments))
                    if received:
                        raise error from None
                    # An earlier request's audio was played, none of this one's: this request
                    # alone can be tried again without repeating anything.
                    delay = self.retry.delay(attempt, error)
                    if delay is None or delay >= self.timeout:
                        # (a wait past the core's per-chunk deadline would time out)
                        raise error from None
                    self.stats.retries += 1
                    self.log.warning(
                        "%s request %d/%d failed (%s); retry %d in %.2fs",
                        self.id,
                        index + 1,
                        len(segments),
                        error,
                        attempt,
                        delay,
                    )
                    await asyncio.sleep(delay)
                    continue
                break
            source_bytes += received
        tail = resampler.flush()
        if tail.pcm:
            yield tail

    async def _request(
        self,
        client: AsyncElevenLabs,
        text: str,
        voice_id: str,
        model: str,
        settings: VoiceSettings,
    ) -> AsyncIterator[bytes]:
        """One streamed request: PCM bytes in whole samples, as they arrive."""
        self.log.debug(
            "POST %s/v1/text-to-speech/%s/stream model=%s chars=%d",
            self.public_base_url,
            voice_id,
            model,
            len(text),
        )
        aligner = PcmAligner()
        # The raw response, for its Content-Type: the client hands on any 2xx body as audio.
        stream = client.text_to_speech.with_raw_response.stream(
            voice_id,
            text=text,
            model_id=model,
            output_format=OUTPUT_FORMAT,
            voice_settings=settings,
            request_options=_REQUEST_OPTIONS,  # type: ignore[arg-type]
        )
        async with stream as response:
            media = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if media.startswith("text/") or media.endswith(("json", "xml")):
                # A proxy's or captive portal's page, played as PCM, would be noise.
                raise BadOutputError(f"{self.service} answered with {media}, not audio")
            async for chunk in response.data:
                if chunk:
                    pcm = aligner.feed(chunk)
                    if pcm:
                        yield pcm
        if aligner.pending:
            # A real server sends whole samples; half of one is dropped, not played.
            self.log.debug("the stream ended on half a sample; dropped the odd byte")

    def _note_partial(
        self, error: ProviderError, source_bytes: int, index: int, total: int
    ) -> None:
        where = f" (request {index + 1} of {total})" if total > 1 else ""
        self.log.debug(
            "failed after %.2fs of speech%s: %s", source_bytes / 2 / SOURCE_RATE, where, error
        )

    # -- voices ----------------------------------------------------------

    async def list_voices(self) -> list[VoiceInfo]:
        """The voices the account can use (``GET /v2/voices``, every page), by name."""
        return await self._call("list_voices", self._list_voices_impl)

    async def _list_voices_impl(self) -> list[VoiceInfo]:
        client = self.client()
        voices: list[VoiceInfo] = []
        token: str | None = None
        for _ in range(MAX_VOICE_PAGES):
            try:
                page = await client.voices.search(
                    page_size=VOICES_PAGE_SIZE,
                    next_page_token=token,
                    request_options=_REQUEST_OPTIONS,  # type: ignore[arg-type]
                )
            except Exception as exc:
                raise self.translate(exc) from None
            for voice in page.voices or ():
                if getattr(voice, "voice_id", None):
                    voices.append(VoiceInfo.from_api(voice))
            token = page.next_page_token
            if not page.has_more or not token:
                break
        else:
            self.log.info("listed the first %d pages of voices only", MAX_VOICE_PAGES)
        return sorted(voices, key=lambda v: (v.name.casefold(), v.voice_id))

    async def get_voice(self, voice_id: str) -> VoiceInfo | None:
        """One voice by id (``GET /v1/voices/{voice_id}``), or None if there is none."""
        return await self._call("get_voice", lambda: self._get_voice_impl(voice_id))

    async def _get_voice_impl(self, voice_id: str) -> VoiceInfo | None:
        client = self.client()
        try:
            voice = await client.voices.get(voice_id, request_options=_REQUEST_OPTIONS)  # type: ignore[arg-type]
        except Exception as exc:
            api_error, _ = _sdk_errors()
            if isinstance(exc, api_error) and exc.status_code in (400, 404, 422):
                return None
            raise self.translate(exc) from None
        return VoiceInfo.from_api(voice)

    # -- errors ----------------------------------------------------------

    @property
    def errors(self) -> ErrorTranslator:
        """The shared error translator for the service as configured now (one per base
        URL and timeout, like the client); it scrubs the key from the server's text."""
        settings = self.bot_wide()
        wanted = (settings.base_url, settings.timeout)
        if self._errors is None or self._errors[0] != wanted:
            translator = ErrorTranslator(
                self.service,
                key_env=ELEVENLABS_KEY.env,
                secrets=lambda: [self._api_key],
                timeout=settings.timeout,
            )
            self._errors = (wanted, translator)
        return self._errors[1]

    def translate(
        self,
        exc: BaseException,
        *,
        voice_id: str | None = None,
        model: str | None = None,
        produced: str = "",
    ) -> BaseException:
        """The core's error for ``exc`` (``exc`` itself when it is none the plugin knows):
        the client's ``ApiError`` and ``ParsingError`` here, httpx's by the translator."""
        errors = self.errors
        api_error, parsing_error = _sdk_errors()
        if isinstance(exc, api_error):
            failure = errors.failure(exc.status_code or 0, exc.body, exc.headers)
            return errors.status_error(
                failure,
                has_key=self.has_key,
                on_status=lambda found: self._refused(found, voice_id, model),
            )
        if parsing_error is not None and isinstance(exc, parsing_error):
            return BadOutputError(f"{errors.service} sent a response that does not fit the API")
        return errors.translate(exc, produced=produced)

    @staticmethod
    def _refused(
        failure: HttpFailure, voice_id: str | None, model: str | None
    ) -> ProviderError | None:
        """ElevenLabs' own statuses: an empty quota, an unknown voice or model."""
        status, code = failure.status, failure.code
        suffix = f": {failure.detail}" if failure.detail else ""
        if status == 401 and code in ("quota_exceeded", "payment_required"):
            return ProviderError(f"the ElevenLabs account has used up its character quota{suffix}")
        if status == 404 and voice_id and (code.startswith("voice") or not code):
            return ConfigurationError(
                f"ElevenLabs has no voice `{voice_id}`; choose one with `!elevenlabs voices`"
                " and `!config tts_elevenlabs voice_id NAME`, or fix ELEVENLABS_VOICE_ID"
            )
        if status in (400, 404, 422) and model and "model" in code:
            return ConfigurationError(
                f"ElevenLabs refused the model `{model}`{suffix}; fix ELEVENLABS_MODEL"
                " or `!config tts_elevenlabs model`"
            )
        return None
