"""``AzureSynthesizer``: Azure AI Speech neural voices over the REST synthesis endpoint.

One ``POST {base}/cognitiveservices/v1`` per call, with the text as SSML and
``X-Microsoft-OutputFormat: raw-48khz-16bit-mono-pcm``. Azure answers with the
audio as a chunked body while it synthesizes; each piece is converted to
Discord's 48 kHz stereo as it arrives (the rate is already right, so only the
channel count changes) and handed on, so playback can start after the first
piece rather than after the whole sentence.

Failures are translated into the core's hierarchy by the core's shared
:class:`hark.api.ErrorTranslator` (aiohttp's errors, statuses, ``Retry-After``),
with Azure's own advice for a rejected key, a wrong address and a refused voice;
the core retries what is retryable. No message, log line or ``repr`` made here
contains the key: it travels only in the ``Ocp-Apim-Subscription-Key`` header.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any
from urllib.parse import urlsplit

import aiohttp

import hark
from hark import (
    AudioClip,
    BadOutputError,
    ConfigurationError,
    ProviderError,
    ProviderStatusError,
    StreamResampler,
    Synthesizer,
)
from hark.api import ErrorTranslator, HttpFailure
from hark_tts_azure.settings import AZURE_KEY, DEFAULT_TIMEOUT, AzureSettings
from hark_tts_azure.ssml import build_ssml, voice_locale

log = logging.getLogger(__name__)

# Raw (headerless) 16-bit mono PCM at Discord's own rate: no decoding, no resampling.
OUTPUT_FORMAT = "raw-48khz-16bit-mono-pcm"
AZURE_RATE = 48_000
AZURE_CHANNELS = 1
SYNTHESIS_PATH = "/cognitiveservices/v1"
VOICES_PATH = "/cognitiveservices/voices/list"
#: Seconds warm() waits for its connection-opening request.
WARM_TIMEOUT = 10.0
# How long a fetched voice list is reused (it changes a few times a year).
VOICES_TTL = 6 * 3600.0
# Longest clip handed on at once: a large read is split, so a consumer never waits
# on a big clip and clip sizes stay bounded whatever the network delivers.
MAX_CLIP_SECONDS = 0.5
# The start of an error body read for its message (Azure's are short).
_ERROR_BODY_BYTES = 4096

try:
    _PLUGIN_VERSION = version("hark-tts-azure")
except PackageNotFoundError:  # a source checkout that was not installed
    _PLUGIN_VERSION = "0.0.0"
# Azure requires a User-Agent naming the application (fewer than 255 characters).
USER_AGENT = f"Hark/{hark.__version__} hark-tts-azure/{_PLUGIN_VERSION}"

_REGION = re.compile(r"^[a-z0-9]+$")
# The resource "Endpoint" the Azure portal shows; text to speech lives on another host.
_COGNITIVE_HOST = re.compile(r"^(?P<region>[a-z0-9]+)\.api\.cognitive\.microsoft\.com$")
_PATH_SUFFIXES = (SYNTHESIS_PATH, VOICES_PATH)


@dataclass(frozen=True, slots=True)
class Voice:
    """One entry of Azure's voice list (``GET /cognitiveservices/voices/list``)."""

    short_name: str
    locale: str
    display_name: str = ""
    local_name: str = ""
    gender: str = ""
    locale_name: str = ""
    voice_type: str = ""
    status: str = ""
    name: str = ""
    styles: tuple[str, ...] = ()
    secondary_locales: tuple[str, ...] = ()
    words_per_minute: int | None = None

    @classmethod
    def from_json(cls, item: Any) -> Voice | None:
        """A voice from Azure's JSON object, or None for an entry without a ShortName."""
        if not isinstance(item, dict):
            return None
        short_name = item.get("ShortName")
        if not isinstance(short_name, str) or not short_name.strip():
            return None
        short_name = short_name.strip()

        def text(key: str) -> str:
            value = item.get(key)
            return value.strip() if isinstance(value, str) else ""

        def strings(key: str) -> tuple[str, ...]:
            value = item.get(key)
            return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()

        try:
            wpm: int | None = int(item.get("WordsPerMinute"))  # a string in Azure's JSON
        except (TypeError, ValueError):
            wpm = None
        return cls(
            short_name=short_name,
            locale=text("Locale") or voice_locale(short_name),
            display_name=text("DisplayName"),
            local_name=text("LocalName"),
            gender=text("Gender"),
            locale_name=text("LocaleName"),
            voice_type=text("VoiceType"),
            status=text("Status"),
            name=text("Name"),
            styles=strings("StyleList"),
            secondary_locales=strings("SecondaryLocaleList"),
            words_per_minute=wpm,
        )

    def matches(self, words: Sequence[str]) -> bool:
        """Whether every word occurs in the name, locale, language, gender or display name.

        A word that is a whole locale (``en`` or ``en-GB``) matches only that locale, so
        ``en`` does not also find ``Ben`` or ``Bengali``.
        """
        haystack = " ".join(
            (self.short_name, self.locale, self.locale_name, self.display_name, self.local_name)
        ).lower()
        locale = self.locale.lower()
        for word in (w.lower() for w in words):
            if re.fullmatch(r"[a-z]{2,3}(-[a-z0-9]+)*", word) and (
                locale == word or locale.startswith(word + "-")
            ):
                continue
            if word in ("male", "female", "neutral"):
                if self.gender.lower() != word:
                    return False
                continue
            if word not in haystack:
                return False
        return True

    def describe(self) -> str:
        """``Amber, Female, English (United States)``."""
        parts = [self.display_name or self.short_name]
        if self.gender:
            parts.append(self.gender)
        parts.append(self.locale_name or self.locale)
        if self.status and self.status.upper() != "GA":
            parts.append(self.status.lower())
        return ", ".join(parts)


class PcmToDiscord:
    """48 kHz mono s16le in pieces of any length -> 48 kHz stereo clips.

    A network read can end in the middle of a sample; that odd byte is kept and
    put in front of the next piece, so samples are never split or shifted.
    """

    def __init__(self, max_clip_seconds: float = MAX_CLIP_SECONDS) -> None:
        self._resampler = StreamResampler(AZURE_RATE, AZURE_CHANNELS, AZURE_RATE, 2)
        self._leftover = b""
        frame = AudioClip.SAMPLE_WIDTH * AZURE_CHANNELS
        self._max_bytes = max(frame, int(max_clip_seconds * AZURE_RATE) * frame)
        self.received = 0  # bytes of mono PCM taken in

    @property
    def seconds(self) -> float:
        """Seconds of audio received so far."""
        return self.received / (AZURE_RATE * AZURE_CHANNELS * AudioClip.SAMPLE_WIDTH)

    def feed(self, data: bytes) -> list[AudioClip]:
        """Clips for ``data`` (none while less than one sample has arrived)."""
        self.received += len(data)
        if self._leftover:
            data = self._leftover + data
        usable = len(data) - len(data) % (AudioClip.SAMPLE_WIDTH * AZURE_CHANNELS)
        self._leftover = data[usable:]
        clips = []
        for start in range(0, usable, self._max_bytes):
            clip = self._resampler.feed(data[start : min(start + self._max_bytes, usable)])
            if clip.pcm:
                clips.append(clip)
        return clips

    def finish(self) -> list[AudioClip]:
        """What the converter still holds at the end of the stream."""
        if self._leftover:
            log.debug("the audio stream ended in the middle of a sample; dropped 1 byte")
            self._leftover = b""
        tail = self._resampler.flush()
        return [tail] if tail.pcm else []


class AzureSynthesizer(Synthesizer):
    """Text to speech with Azure AI Speech (neural voices), streamed as 48 kHz stereo."""

    sample_rate = 48_000
    channels = 2
    # One request's text; the core splits longer text at sentences. (Azure caps the
    # audio of one request at 10 minutes, far beyond this.)
    max_text_length = 5_000
    # A configured cloud voice ranks above local fallbacks (piper: -10) and level with
    # the other cloud voice (ElevenLabs: 10) when a server has chosen none.
    default_priority = 10
    # Used outside a bot (tests, `bot prepare`); in the bot the plugin's declaration.
    settings_model = AzureSettings

    def __init__(
        self,
        *,
        api_key: str | None = None,
        region: str | None = None,
        endpoint: str | None = None,
        timeout: float | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """The key comes from ``AZURE_SPEECH_KEY`` and the rest from the plugin's
        settings (``environ`` is their environment layer); arguments given here
        win over both (for scripts and tests)."""
        super().__init__()
        self.environ = environ
        self._api_key = (AZURE_KEY.value(environ) if api_key is None else api_key).strip()
        # The bot's log formatter replaces registered secrets with *** (a second line of
        # defence: nothing here logs the key in the first place).
        hark.register_secret(self._api_key)
        given = {"region": region, "endpoint": endpoint, "timeout": timeout}
        self._fixed = {key: value for key, value in given.items() if value is not None}
        self.voices_ttl = VOICES_TTL
        self._session_cache: tuple[asyncio.AbstractEventLoop, aiohttp.ClientSession] | None = None
        self._voices: tuple[str, float, tuple[Voice, ...]] | None = None
        self._errors: tuple[tuple[str, float], ErrorTranslator] | None = None

    # -- configuration ---------------------------------------------------

    def bot_wide(self) -> AzureSettings:
        """The bot-wide settings (where the service is, the default voice)."""
        resolved = self.resolve()
        assert resolved is not None
        return self._with_fixed(resolved.values)

    def _with_fixed(self, settings: AzureSettings) -> AzureSettings:
        if not self._fixed:
            return settings
        fixed = dict(self._fixed)
        if "region" in fixed:
            fixed["region"] = re.sub(r"\s+", "", str(fixed["region"]).lower())
        if "timeout" in fixed and not fixed["timeout"] > 0:
            fixed["timeout"] = DEFAULT_TIMEOUT
        return settings.model_copy(update=fixed)

    @property
    def timeout(self) -> float:  # the core's per-clip deadline and the HTTP read timeout
        return self.bot_wide().timeout

    @timeout.setter
    def timeout(self, value: float) -> None:
        self._fixed["timeout"] = value

    @property
    def region(self) -> str:
        return self.bot_wide().region

    @property
    def endpoint(self) -> str:
        return self.bot_wide().endpoint

    @property
    def default_voice(self) -> str:
        return self.bot_wide().voice

    @property
    def has_key(self) -> bool:
        return bool(self._api_key)

    def _endpoint_problem(self, endpoint: str) -> str | None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return "AZURE_SPEECH_ENDPOINT is not an http(s) URL"
        try:
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            return "AZURE_SPEECH_ENDPOINT has an invalid port"
        return None

    @staticmethod
    def _base_url(settings: AzureSettings) -> str:
        if settings.endpoint:
            parts = urlsplit(settings.endpoint)
            host = (parts.hostname or "").lower()
            if match := _COGNITIVE_HOST.match(host):
                return f"https://{match['region']}.tts.speech.microsoft.com"
            path = parts.path.rstrip("/")
            for suffix in _PATH_SUFFIXES:
                if path.endswith(suffix):
                    path = path[: -len(suffix)]
            return f"{parts.scheme}://{parts.netloc}{path}"
        if settings.region:
            return f"https://{settings.region}.tts.speech.microsoft.com"
        return ""

    @property
    def base_url(self) -> str:
        """Where the REST API lives: ``https://{region}.tts.speech.microsoft.com`` or the
        endpoint given (without a trailing ``/cognitiveservices/...`` path)."""
        return self._base_url(self.bot_wide())

    @property
    def public_base_url(self) -> str:
        """``base_url`` fit to show or log: no ``user:password@``, no query string."""
        return _public(self.base_url)

    @property
    def host(self) -> str:
        return urlsplit(self.public_base_url).netloc or "(not configured)"

    @property
    def where(self) -> str:
        """How messages name the service's location: a region or an endpoint host."""
        settings = self.bot_wide()
        if settings.endpoint:
            return f"endpoint {self.host}"
        return f"region {settings.region}" if settings.region else "(no region set)"

    @property
    def synthesis_url(self) -> str:
        return self.base_url + SYNTHESIS_PATH

    @property
    def voices_url(self) -> str:
        return self.base_url + VOICES_PATH

    def unavailable_reason(self) -> str | None:
        settings = self.bot_wide()
        if not self.has_key:
            return "AZURE_SPEECH_KEY is not set"
        if settings.endpoint:
            return self._endpoint_problem(settings.endpoint)
        if not settings.region:
            return "AZURE_SPEECH_REGION (or AZURE_SPEECH_ENDPOINT) is not set"
        if not _REGION.match(settings.region):
            return "AZURE_SPEECH_REGION is not a region name such as `westeurope` or `eastus`"
        return None

    def _require_configured(self) -> None:
        reason = self.unavailable_reason()
        if reason:
            raise ConfigurationError(f"Azure Speech is not set up: {reason}")

    def headers(self, *, synthesis: bool) -> dict[str, str]:
        headers = {"Ocp-Apim-Subscription-Key": self._api_key, "User-Agent": USER_AGENT}
        if synthesis:
            headers["Content-Type"] = "application/ssml+xml"
            headers["X-Microsoft-OutputFormat"] = OUTPUT_FORMAT
        return headers

    def __repr__(self) -> str:  # never the key
        return f"<{type(self).__name__} {self.id} {self.public_base_url or 'unconfigured'}>"

    async def check_setting(self, key: str, value: Any) -> Any:
        """`!config tts_azure voice NAME`: only a voice Azure lists here, stored under
        its canonical ShortName (an unchecked name would fail every later synthesis)."""
        if key != "voice":
            return value
        found = await self.find_voice(value)
        if found is None:
            raise ValueError(
                f"Azure Speech ({self.where}) has no voice `{value}`; `!azure voices` lists them"
            )
        return found.short_name

    def locale_of(self, voice: str) -> str:
        """The voice's locale: from the fetched voice list when it has the voice, else
        from its name (``en-GB-RyanNeural`` -> ``en-GB``)."""
        if self._voices is not None:
            wanted = voice.lower()
            for known in self._voices[2]:
                if known.short_name.lower() == wanted or known.name.lower() == wanted:
                    return known.locale
        return voice_locale(voice)

    # -- the HTTP session ------------------------------------------------

    def _session(self) -> aiohttp.ClientSession:
        """One session (one connection pool, kept alive between calls) per event loop."""
        loop = asyncio.get_running_loop()
        cached = self._session_cache
        if cached is None or cached[0] is not loop or cached[1].closed:
            timeout = aiohttp.ClientTimeout(
                total=None, sock_connect=min(10.0, self.timeout), sock_read=self.timeout
            )
            session = aiohttp.ClientSession(timeout=timeout)
            self._session_cache = cached = (loop, session)
        return cached[1]

    async def warm(self) -> None:
        """Open the connection pool with ``HEAD {base}/cognitiveservices/voices/list``
        (the synthesis host; headers only, not the long voice list), so the first reply
        does not pay for the TCP/TLS handshake. Any answer, even an error status, leaves
        a connection open. Never raises: a failure is logged at DEBUG."""
        if self.unavailable_reason() is not None:
            return
        try:
            async with asyncio.timeout(WARM_TIMEOUT):
                async with self._session().head(
                    self.voices_url, headers=self.headers(synthesis=False)
                ) as response:
                    await response.read()
        except Exception as exc:
            self.log.debug("warm-up of %s failed (%s)", self.host, type(exc).__name__)
        else:
            self.log.debug("warmed the connection to %s (HTTP %d)", self.host, response.status)

    async def aclose(self) -> None:
        """Close the connection pool (the next call opens a new one)."""
        cached, self._session_cache = self._session_cache, None
        if cached is not None and cached[0] is asyncio.get_running_loop():
            await cached[1].close()

    # -- errors ----------------------------------------------------------

    @property
    def errors(self) -> ErrorTranslator:
        """The shared error translator for the service as configured now (one per
        address and timeout); it scrubs the key from anything the server sent."""
        settings = self.bot_wide()
        wanted = (self._base_url(settings), settings.timeout)
        if self._errors is None or self._errors[0] != wanted:
            translator = ErrorTranslator(
                f"Azure Speech at {self.host}",
                key_env=AZURE_KEY.env,
                secrets=lambda: [self._api_key],
                timeout=settings.timeout,
            )
            self._errors = (wanted, translator)
        return self._errors[1]

    async def _refusal(
        self, response: aiohttp.ClientResponse, *, voice: str | None = None
    ) -> ProviderError:
        """The error for an answer other than 200, with the server's (scrubbed) reason."""
        body = None
        if response.content_type != "text/html":  # a proxy's error page says nothing useful
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                body = await response.content.read(_ERROR_BODY_BYTES)
        errors = self.errors
        failure = errors.failure(response.status, body, response.headers)
        return errors.status_error(
            failure, has_key=self.has_key, on_status=lambda found: self._advice(found, voice)
        )

    def _advice(self, failure: HttpFailure, voice: str | None) -> ProviderError | None:
        """Azure's own reading of a status: what to check."""
        status = failure.status
        detail = f": {failure.detail}" if failure.detail else ""
        if status in (401, 403):
            message = (
                f"Azure Speech rejected the key (HTTP {status}): check that AZURE_SPEECH_KEY"
                f" is a key of a Speech resource in {self.where}"
            )
        elif status == 404:
            message = (
                f"there is no Azure text-to-speech API at {self.public_base_url} (HTTP 404):"
                " check AZURE_SPEECH_REGION / AZURE_SPEECH_ENDPOINT"
            )
        elif status == 400 and voice is not None:
            message = (
                f"Azure Speech refused the request: check the voice `{voice}` exists"
                " in this region and the rate/pitch settings"
            )
        else:
            return None
        return ProviderStatusError(message + detail, status=status)

    # -- synthesis ---------------------------------------------------------

    async def _impl(
        self, text: str, *, guild_id: int | None, settings: AzureSettings
    ) -> AsyncIterator[AudioClip]:
        """``settings`` are this server's (the core resolved them for the call)."""
        self._require_configured()
        if not text.strip():
            return
        settings = self._with_fixed(settings)
        voice_name = settings.voice.strip()
        locale = self.locale_of(voice_name)
        ssml = build_ssml(text, voice_name, locale=locale, rate=settings.rate, pitch=settings.pitch)
        url = self._base_url(settings) + SYNTHESIS_PATH
        pcm = PcmToDiscord()
        self.log.debug(
            "%s synthesizing %d characters with %s at %s",
            self.id,
            len(text),
            voice_name,
            _public(url),
        )
        try:
            async with self._session().post(
                url, data=ssml.encode("utf-8"), headers=self.headers(synthesis=True)
            ) as response:
                if response.status != 200:
                    raise await self._refusal(response, voice=voice_name)
                ctype = response.content_type
                if ctype.startswith("text/") or "json" in ctype:
                    raise BadOutputError(f"Azure Speech answered with {ctype}, not audio")
                async for data in response.content.iter_any():
                    for clip in pcm.feed(data):
                        yield clip
                for clip in pcm.finish():
                    yield clip
        except Exception as exc:
            produced = f"after {pcm.seconds:.2f}s of audio" if pcm.received else ""
            raise self.errors.translate(exc, produced=produced) from None

    # -- voices ------------------------------------------------------------

    async def list_voices(self, *, refresh: bool = False) -> list[Voice]:
        """The voices Azure offers at this region/endpoint, sorted by ShortName.

        Fetched once and reused for :attr:`voices_ttl` seconds unless ``refresh``.
        """
        cached = self._voices
        if (
            not refresh
            and cached is not None
            and cached[0] == self.base_url
            and time.monotonic() - cached[1] < self.voices_ttl
        ):
            return list(cached[2])
        voices = await self._call("list_voices", self._list_voices_impl)
        self._voices = (self.base_url, time.monotonic(), tuple(voices))
        return list(voices)

    async def find_voice(self, name: str) -> Voice | None:
        """The listed voice called ``name`` (its ShortName or long Name, any case), or None."""
        wanted = name.strip().lower()
        for voice in await self.list_voices():
            if wanted in (voice.short_name.lower(), voice.name.lower()):
                return voice
        return None

    async def _list_voices_impl(self) -> list[Voice]:
        self._require_configured()
        try:
            async with self._session().get(
                self.voices_url, headers=self.headers(synthesis=False)
            ) as response:
                if response.status != 200:
                    raise await self._refusal(response)
                body = await response.json(content_type=None)
        except Exception as exc:
            raise self.errors.translate(exc) from None
        if not isinstance(body, list):
            raise BadOutputError("the voice list from Azure Speech is not a JSON array")
        voices = [v for v in (Voice.from_json(item) for item in body) if v is not None]
        if body and not voices:
            raise BadOutputError("the voice list from Azure Speech has no usable entries")
        voices.sort(key=lambda v: v.short_name.lower())
        return voices


def _public(url: str) -> str:
    """``url`` fit to show or log: no ``user:password@``, no query string."""
    parts = urlsplit(url)
    if not parts.scheme:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{host}{parts.path}"
