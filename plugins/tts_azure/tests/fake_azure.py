"""A loopback Azure Speech text-to-speech server for tests (no internet, no Azure account).

:class:`FakeAzureTTS` speaks the documented REST API closely enough for this
plugin, or any other client, to talk to it on 127.0.0.1 (a random port):

``POST /cognitiveservices/v1``
    Checks what Azure checks: the ``Ocp-Apim-Subscription-Key`` header (401
    otherwise), ``Content-Type: application/ssml+xml`` (415), a known raw PCM
    ``X-Microsoft-OutputFormat`` and a ``User-Agent`` under 255 characters (400),
    and SSML that parses (``xml.etree``) with a ``<speak version="1.0" xml:lang>``
    root and ``<voice name>`` of a listed voice (400). It answers 200 with a
    chunked body of raw s16le mono PCM: a deterministic tone whose length grows
    with the text (and the prosody rate) and whose frequency depends on the voice
    (and the pitch), so tests can tell what reached the server from the audio.
``GET /cognitiveservices/voices/list``
    The voices in Azure's JSON shape (``Name``, ``ShortName``, ``Locale``, ...).

Failures on demand: :meth:`~FakeAzureTTS.fail_next` (any status, e.g. 401, 429 with
``Retry-After``, 500/503 for the next N requests), :meth:`~FakeAzureTTS.bad_body_next`
(a 200 with an HTML page instead of audio) and :meth:`~FakeAzureTTS.cut_next`
(the audio stream is dropped after some bytes). Every request is recorded, with
its parsed SSML::

    async with FakeAzureTTS(key="test-key") as azure:
        synth = AzureSynthesizer(api_key="test-key", endpoint=azure.url, environ={})
        clips = [c async for c in synth.synthesize("Hi & bye")]
        assert azure.last_synthesis.ssml.text == "Hi & bye"

Other packages' end-to-end tests import it from here.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
import uuid
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from aiohttp import web
from multidict import CIMultiDict

from hark.testing.loopback import FailureQueue, LoopbackServer

__all__ = [
    "DEFAULT_VOICES",
    "HTML_PAGE",
    "FakeAzureTTS",
    "RecordedRequest",
    "SsmlRequest",
    "azure_voice",
    "tone_pcm",
]

SYNTHESIS_PATH = "/cognitiveservices/v1"
VOICES_PATH = "/cognitiveservices/voices/list"
SSML_NS = "http://www.w3.org/2001/10/synthesis"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"

# The raw PCM formats Azure streams, and their sample rates.
RAW_FORMATS = {
    "raw-8khz-16bit-mono-pcm": 8_000,
    "raw-16khz-16bit-mono-pcm": 16_000,
    "raw-22050hz-16bit-mono-pcm": 22_050,
    "raw-24khz-16bit-mono-pcm": 24_000,
    "raw-44100hz-16bit-mono-pcm": 44_100,
    "raw-48khz-16bit-mono-pcm": 48_000,
}

UNAUTHORIZED_MESSAGE = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide"
    " a valid key for an active subscription and use a correct regional API endpoint for your"
    " resource."
)

#: What :meth:`FakeAzureTTS.bad_body_next` answers with: a proxy's or captive portal's page.
HTML_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>Sign in</title></head>\n"
    '<body><p>Please <a href="http://portal.example/login">sign in</a>.</p></body>\n'
    "</html>\n"
)

_RATE_WORDS = {"x-slow": 0.5, "slow": 0.64, "medium": 1.0, "fast": 1.55, "x-fast": 2.0}
_PITCH_WORDS = {"x-low": 0.7, "low": 0.85, "medium": 1.0, "high": 1.15, "x-high": 1.3}


def azure_voice(
    short_name: str,
    display_name: str,
    gender: str,
    locale_name: str,
    **extra: Any,
) -> dict[str, Any]:
    """One voice-list entry in Azure's JSON shape."""
    locale, _, name = short_name.rpartition("-")
    entry: dict[str, Any] = {
        "Name": f"Microsoft Server Speech Text to Speech Voice ({locale}, {name})",
        "DisplayName": display_name,
        "LocalName": extra.pop("LocalName", display_name),
        "ShortName": short_name,
        "Gender": gender,
        "Locale": locale,
        "LocaleName": locale_name,
        "SampleRateHertz": "48000",
        "VoiceType": "Neural",
        "Status": "GA",
        "WordsPerMinute": "150",
    }
    entry.update(extra)
    return entry


DEFAULT_VOICES: tuple[dict[str, Any], ...] = (
    azure_voice("en-US-AmberNeural", "Amber", "Female", "English (United States)"),
    azure_voice(
        "en-US-JennyNeural",
        "Jenny",
        "Female",
        "English (United States)",
        StyleList=["assistant", "chat", "cheerful", "sad"],
        ExtendedPropertyMap={"IsHighQuality48K": "True"},
        WordsPerMinute="152",
    ),
    azure_voice("en-US-GuyNeural", "Guy", "Male", "English (United States)"),
    azure_voice(
        "en-US-AndrewMultilingualNeural",
        "Andrew Multilingual",
        "Male",
        "English (United States)",
        SecondaryLocaleList=["de-DE", "en-GB", "fr-FR", "ja-JP"],
    ),
    azure_voice("en-GB-RyanNeural", "Ryan", "Male", "English (United Kingdom)"),
    azure_voice("en-GB-SoniaNeural", "Sonia", "Female", "English (United Kingdom)"),
    azure_voice("de-DE-KatjaNeural", "Katja", "Female", "German (Germany)"),
    azure_voice("fr-FR-DeniseNeural", "Denise", "Female", "French (France)"),
    azure_voice("ja-JP-NanamiNeural", "Nanami", "Female", "Japanese (Japan)", LocalName="七海"),
    azure_voice(
        "zh-CN-shaanxi-XiaoniNeural",
        "Xiaoni",
        "Female",
        "Chinese (Zhongyuan Mandarin Shaanxi, Simplified)",
        LocalName="晓妮",
        Status="Preview",
    ),
)


# -- the deterministic "speech" ------------------------------------------


def _rate_factor(rate: str | None) -> float:
    """How much faster than normal a prosody ``rate`` speaks (1 when unknown)."""
    if not rate:
        return 1.0
    text = rate.strip().lower()
    if text in _RATE_WORDS:
        return _RATE_WORDS[text]
    try:
        if text.endswith("%"):
            return max(0.1, 1 + float(text[:-1]) / 100)
        return max(0.1, float(text))
    except ValueError:
        return 1.0


def _pitch_frequency(base: float, pitch: str | None) -> float:
    """The tone frequency for a prosody ``pitch`` applied to the voice's ``base``."""
    if not pitch:
        return base
    text = pitch.strip().lower()
    if text in _PITCH_WORDS:
        return base * _PITCH_WORDS[text]
    match = re.fullmatch(r"([+-]?)(\d+(?:\.\d+)?)(%|hz|st)", text)
    if not match:
        return base
    sign, value, unit = match.groups()
    number = float(value) * (-1 if sign == "-" else 1)
    if unit == "%":
        return base * (1 + number / 100)
    if unit == "st":
        return base * 2 ** (number / 12)
    return base + number if sign else number  # "+20Hz" relative, "220Hz" absolute


def voice_frequency(voice: str) -> float:
    """A voice's own tone (Hz), from its name: 180 to 360 Hz."""
    return 180.0 + zlib.crc32(voice.lower().encode()) % 181


def tone_pcm(
    text: str,
    voice: str,
    *,
    rate: str | None = None,
    pitch: str | None = None,
    sample_rate: int = 48_000,
    seconds_per_char: float = 0.03,
) -> bytes:
    """The mono s16le audio the fake server speaks for ``text``.

    0.1 s plus ``seconds_per_char`` per character, divided by the rate factor, of a
    sine at the voice's frequency (shifted by ``pitch``), amplitude 8000, with 5 ms
    fades. Empty text gives no audio.
    """
    text = text.strip()
    if not text:
        return b""
    seconds = (0.1 + seconds_per_char * len(text)) / _rate_factor(rate)
    frames = max(1, round(seconds * sample_rate))
    frequency = max(20.0, _pitch_frequency(voice_frequency(voice), pitch))
    t = np.arange(frames, dtype=np.float64) / sample_rate
    wave = np.sin(2 * math.pi * frequency * t) * 8000.0
    fade = min(frames // 2, int(0.005 * sample_rate))
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        wave[:fade] *= ramp
        wave[-fade:] *= ramp[::-1]
    return wave.round().astype("<i2").tobytes()


# -- what arrived ----------------------------------------------------------


@dataclass(slots=True)
class SsmlRequest:
    """What a synthesis request's SSML asked for."""

    lang: str
    voice: str
    text: str
    rate: str | None = None
    pitch: str | None = None
    voice_lang: str | None = None


@dataclass(slots=True)
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    headers: CIMultiDict[str]
    body: bytes = b""
    ssml: SsmlRequest | None = None
    status: int | None = None  # what the server answered
    received_at: float = field(default_factory=time.monotonic)

    @property
    def key(self) -> str | None:
        """The key sent in ``Ocp-Apim-Subscription-Key`` (compare it; never print it)."""
        return self.headers.get("Ocp-Apim-Subscription-Key")


@dataclass(slots=True)
class _Cut:
    after_bytes: int


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_ssml(body: bytes, voices: Iterable[str]) -> SsmlRequest:
    """Check SSML as Azure does; :class:`_BadRequest` (400) describes what is wrong."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise _BadRequest(400, f"SSML is not well-formed XML: {exc}") from None
    if root.tag not in (f"{{{SSML_NS}}}speak", "speak"):
        raise _BadRequest(400, f"the SSML root must be <speak>, not <{root.tag}>")
    if root.get("version") != "1.0":
        raise _BadRequest(400, "<speak> needs version='1.0'")
    lang = root.get(XML_LANG)
    if not lang:
        raise _BadRequest(400, "<speak> needs xml:lang")
    voice_tags = [el for el in root.iter() if el.tag in (f"{{{SSML_NS}}}voice", "voice")]
    if not voice_tags:
        raise _BadRequest(400, "the SSML names no <voice>")
    known = {v.lower() for v in voices}
    names = []
    for element in voice_tags:
        name = (element.get("name") or "").strip()
        if not name:
            raise _BadRequest(400, "<voice> needs a name")
        if name.lower() not in known:
            raise _BadRequest(400, f"unsupported voice {name}")
        names.append(name)
    prosody = next(
        (el for el in root.iter() if el.tag in (f"{{{SSML_NS}}}prosody", "prosody")), None
    )
    text = "".join("".join(el.itertext()) for el in voice_tags).strip()
    return SsmlRequest(
        lang=lang,
        voice=names[0],
        text=text,
        rate=prosody.get("rate") if prosody is not None else None,
        pitch=prosody.get("pitch") if prosody is not None else None,
        voice_lang=voice_tags[0].get(XML_LANG),
    )


class FakeAzureTTS(LoopbackServer):
    """Azure Speech's text-to-speech REST API on 127.0.0.1 (a random port).

    ``key``: requests must carry it in ``Ocp-Apim-Subscription-Key`` (None: any key).
    ``voices``: the voice list (Azure's JSON objects); synthesis accepts only these.
    ``seconds_per_char``: how long the tone is per character of text.
    ``chunk_bytes``: bytes per body chunk (odd sizes split samples across chunks);
    ``chunk_delay``: seconds between chunks; ``delay``: seconds before answering.
    """

    def __init__(
        self,
        *,
        key: str | None = None,
        voices: Iterable[Mapping[str, Any]] = DEFAULT_VOICES,
        seconds_per_char: float = 0.03,
        chunk_bytes: int = 4800,
        chunk_delay: float = 0.0,
        delay: float = 0.0,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(host=host)
        self.key = key
        self.voices = [dict(v) for v in voices]
        self.seconds_per_char = seconds_per_char
        self.chunk_bytes = chunk_bytes
        self.chunk_delay = chunk_delay
        self.delay = delay
        self.requests: list[RecordedRequest] = []
        self._failures = FailureQueue()
        self._cuts: list[_Cut] = []

    # -- lifecycle (start, close, ``async with``, ``url``: LoopbackServer) --
    # ``url`` is the base URL to give as ``AZURE_SPEECH_ENDPOINT``.

    def routes(self, app: web.Application) -> None:
        app.router.add_post(SYNTHESIS_PATH, self._synthesize)
        app.router.add_get(VOICES_PATH, self._voices)

    # -- what arrived ------------------------------------------------------

    @property
    def synthesis_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == SYNTHESIS_PATH]

    @property
    def voices_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == VOICES_PATH]

    @property
    def last_synthesis(self) -> RecordedRequest:
        return self._last(self.synthesis_requests, "synthesis request")

    def voice_names(self) -> list[str]:
        """Every name synthesis accepts: each voice's ShortName and long Name."""
        names = []
        for voice in self.voices:
            names.extend(str(voice[k]) for k in ("ShortName", "Name") if voice.get(k))
        return names

    def expected_pcm(
        self,
        text: str,
        voice: str,
        *,
        rate: str | None = None,
        pitch: str | None = None,
        sample_rate: int = 48_000,
    ) -> bytes:
        """The mono PCM this server sends for that request."""
        return tone_pcm(
            text,
            voice,
            rate=rate,
            pitch=pitch,
            sample_rate=sample_rate,
            seconds_per_char=self.seconds_per_char,
        )

    # -- scripted failures -------------------------------------------------

    def fail_next(
        self,
        status: int = 503,
        *,
        times: int = 1,
        retry_after: float | str | None = None,
        message: str | None = None,
        endpoint: Literal["synthesis", "voices", "any"] = "synthesis",
    ) -> None:
        """Answer the next ``times`` matching requests with HTTP ``status``."""
        keys = None if endpoint == "any" else [endpoint]
        self._failures.add(status, times=times, keys=keys, retry_after=retry_after, message=message)

    def bad_body_next(
        self,
        *,
        times: int = 1,
        endpoint: Literal["synthesis", "voices", "any"] = "synthesis",
    ) -> None:
        """Answer the next ``times`` matching requests 200 with an HTML page
        (:data:`HTML_PAGE`, ``text/html``), as a proxy or captive portal would. Queued in
        order with :meth:`fail_next`'s failures."""
        keys = None if endpoint == "any" else [endpoint]
        self._failures.add(200, times=times, keys=keys, body="html")

    def cut_next(self, *, after_bytes: int = 9600, times: int = 1) -> None:
        """Drop the connection of the next synthesis reply(s) after ``after_bytes`` of audio
        (the chunked body never gets its terminating chunk)."""
        self._cuts.extend(_Cut(after_bytes) for _ in range(times))

    def clear(self) -> None:
        """Forget recorded requests and pending failures."""
        self.requests.clear()
        self._failures.clear()
        self._cuts.clear()

    # -- handlers ----------------------------------------------------------

    @staticmethod
    def _error(
        record: RecordedRequest,
        status: int,
        message: str,
        *,
        retry_after: float | str | None = None,
    ) -> web.Response:
        record.status = status
        headers = {"X-RequestId": uuid.uuid4().hex}
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        if status in (401, 403, 429):
            # Azure's gateway answers these with a JSON error object.
            body = {"error": {"code": str(status), "message": message}}
            return web.json_response(body, status=status, headers=headers)
        return web.Response(status=status, text=message, headers=headers)

    def _refusal(self, record: RecordedRequest, endpoint: str) -> web.Response | None:
        """Authentication, then scripted failures: the response to send instead, if any."""
        if self.key is not None and record.key != self.key:
            return self._error(record, 401, UNAUTHORIZED_MESSAGE)
        failure = self._failures.take(endpoint)
        if failure is not None and failure.details.get("body") == "html":
            record.status = 200
            return web.Response(text=HTML_PAGE, content_type="text/html")
        if failure is not None:
            default = {
                401: UNAUTHORIZED_MESSAGE,
                403: "Forbidden: the key's resource may not use this service.",
                429: "Requests to the Speech Service have exceeded the rate limit of your tier.",
            }.get(failure.status, f"Injected failure (HTTP {failure.status}).")
            return self._error(
                record, failure.status, failure.message or default, retry_after=failure.retry_after
            )
        return None

    async def _voices(self, request: web.Request) -> web.StreamResponse:
        record = RecordedRequest(request.method, request.path, CIMultiDict(request.headers))
        self.requests.append(record)
        refusal = self._refusal(record, "voices")
        if refusal is not None:
            return refusal
        record.status = 200
        return web.json_response(self.voices, headers={"X-RequestId": uuid.uuid4().hex})

    async def _synthesize(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        record = RecordedRequest(request.method, request.path, CIMultiDict(request.headers), body)
        self.requests.append(record)
        refusal = self._refusal(record, "synthesis")
        if refusal is not None:
            return refusal
        if request.content_type != "application/ssml+xml":
            return self._error(record, 415, "Content-Type must be application/ssml+xml")
        output_format = request.headers.get("X-Microsoft-OutputFormat", "")
        if output_format not in RAW_FORMATS:
            return self._error(record, 400, f"unsupported output format {output_format!r}")
        agent = request.headers.get("User-Agent", "")
        if not agent or len(agent) >= 255:
            return self._error(record, 400, "User-Agent must name the application (< 255 chars)")
        try:
            record.ssml = ssml = parse_ssml(body, self.voice_names())
        except _BadRequest as exc:
            return self._error(record, exc.status, exc.message)
        if self.delay:
            await asyncio.sleep(self.delay)
        pcm = self.expected_pcm(
            ssml.text,
            ssml.voice,
            rate=ssml.rate,
            pitch=ssml.pitch,
            sample_rate=RAW_FORMATS[output_format],
        )
        record.status = 200
        response = web.StreamResponse(
            status=200,
            headers={
                # The plugin does not rely on the type; any audio/binary type will do.
                "Content-Type": "application/octet-stream",
                "X-RequestId": uuid.uuid4().hex,
            },
        )
        response.enable_chunked_encoding()
        await response.prepare(request)
        cut = self._cuts.pop(0) if self._cuts else None
        limit = len(pcm) if cut is None else min(cut.after_bytes, len(pcm))
        step = max(1, self.chunk_bytes)
        for start in range(0, limit, step):
            await response.write(pcm[start : min(start + step, limit)])
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
        if cut is not None:
            # Let what was written reach the client, then drop the connection mid-body.
            await asyncio.sleep(0.05)
            if request.transport is not None:
                request.transport.abort()
            return response
        await response.write_eof()
        return response
