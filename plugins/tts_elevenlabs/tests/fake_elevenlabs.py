"""A loopback ElevenLabs server for tests (no internet, no ElevenLabs account).

:class:`FakeElevenLabs` speaks the documented REST API closely enough for the
real ``elevenlabs`` client (and this plugin) to talk to it:

- ``POST /v1/text-to-speech/{voice_id}/stream?output_format=pcm_22050``: the body
  ``{"text", "model_id", "voice_settings", ...}``; the answer is raw s16le mono
  PCM at the requested rate, sent with chunked transfer encoding. The audio is a
  deterministic sine tone whose length grows with the text
  (:meth:`FakeElevenLabs.pcm_for` gives the exact bytes).
- ``GET /v2/voices`` (paginated: ``page_size``, ``next_page_token``, ``has_more``),
  ``GET /v1/voices`` and ``GET /v1/voices/{voice_id}``.
- ``xi-api-key`` is checked when ``api_key`` is set; errors use ElevenLabs' JSON
  shape ``{"detail": {"status": "...", "message": "..."}}`` (FastAPI's list form
  for validation errors, HTTP 422).

Scriptable failures: :meth:`~FakeElevenLabs.fail_next` (any status, ``Retry-After``,
for the next N requests, optionally after letting some through),
:meth:`~FakeElevenLabs.bad_body_next` (a 200 with an HTML page instead of audio) and
:meth:`~FakeElevenLabs.cut_next` (the connection drops mid-stream). Every
request is recorded::

    async with FakeElevenLabs(api_key="sk-test") as server:
        synth = ElevenLabsSynthesizer(api_key="sk-test", voice_id=server.voice_ids[0],
                                      base_url=server.url, environ={})
        clips = [clip async for clip in synth.synthesize("Hello there.")]
        assert server.last_tts.text == "Hello there."
        assert server.last_tts.voice_settings["stability"] == 0.3

Other packages' end-to-end tests import it from here.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from aiohttp import web
from multidict import CIMultiDict

from hark.testing.loopback import FailureQueue, LoopbackServer

__all__ = [
    "DEFAULT_MODELS",
    "DEFAULT_VOICES",
    "HTML_PAGE",
    "PCM_RATES",
    "FakeElevenLabs",
    "FakeVoice",
    "RecordedRequest",
]

PCM_RATES = (8_000, 16_000, 22_050, 24_000, 44_100, 48_000)
DEFAULT_MODELS: tuple[str, ...] = (
    "eleven_multilingual_v2",
    "eleven_flash_v2_5",
    "eleven_turbo_v2_5",
    "eleven_v3",
)
TTS_PREFIX = "/v1/text-to-speech/"
#: What :meth:`FakeElevenLabs.bad_body_next` answers with: a proxy's or captive portal's page.
HTML_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>Sign in</title></head>\n"
    '<body><p>Please <a href="http://portal.example/login">sign in</a>.</p></body>\n'
    "</html>\n"
)
Endpoint = Literal["tts", "voices", "any"]


@dataclass(frozen=True, slots=True)
class FakeVoice:
    voice_id: str
    name: str
    category: str = "premade"
    labels: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "voice_id": self.voice_id,
            "name": self.name,
            "category": self.category,
            "labels": dict(self.labels),
            "description": None,
            "preview_url": f"https://example.invalid/{self.voice_id}.mp3",
            "available_for_tiers": [],
            "settings": None,
            "high_quality_base_model_ids": list(DEFAULT_MODELS[:2]),
        }


DEFAULT_VOICES: tuple[FakeVoice, ...] = (
    FakeVoice("21m00Tcm4TlvDq8ikWAM", "Rachel", labels={"accent": "american"}),
    FakeVoice("JBFqnCBsd6RMkjVDRZzb", "George", labels={"accent": "british"}),
    FakeVoice("EXAVITQu4vr4xnZDxMaL", "Sarah", labels={"accent": "american"}),
    FakeVoice("pNInz6obpgDQGcFmaJgB", "Adam", labels={"accent": "american"}),
    FakeVoice("Xb7hH8MSUJpSbSDYk0k2", "Alice", labels={"accent": "british"}),
    FakeVoice("cloneD0000000000aaaa", "My Cloned Voice", "cloned"),
)


@dataclass(slots=True)
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDict[str]
    body: Any = None
    received_at: float = field(default_factory=time.monotonic)
    #: When the answer was complete (None while streaming, or if it was cut off).
    finished_at: float | None = None
    status: int | None = None
    #: Audio bytes sent in the answer (text-to-speech only).
    bytes_sent: int = 0

    @property
    def api_key(self) -> str | None:
        """The ``xi-api-key`` header (tests compare it; never print it)."""
        return self.headers.get("xi-api-key")

    @property
    def is_tts(self) -> bool:
        return self.method == "POST" and self.path.startswith(TTS_PREFIX)

    @property
    def voice_id(self) -> str | None:
        if not self.path.startswith(TTS_PREFIX):
            return None
        return self.path[len(TTS_PREFIX) :].split("/", 1)[0]

    def _field(self, name: str) -> Any:
        return self.body.get(name) if isinstance(self.body, dict) else None

    @property
    def text(self) -> str | None:
        return self._field("text")

    @property
    def model_id(self) -> str | None:
        return self._field("model_id")

    @property
    def voice_settings(self) -> dict[str, Any] | None:
        return self._field("voice_settings")

    @property
    def output_format(self) -> str | None:
        return self.query.get("output_format")


@dataclass(slots=True)
class _Cut:
    after_bytes: int
    reset: bool
    skip: int


@functools.lru_cache(maxsize=32)
def _tone(frames: int, sample_rate: int, frequency: float, amplitude: float) -> bytes:
    # Cached: benchmarks ask for the same text again and again, and should time the
    # client, not the fake server computing its sine.
    t = np.arange(frames, dtype=np.float64) / sample_rate
    peak = 32767 * max(0.0, min(1.0, amplitude))
    return np.round(peak * np.sin(2 * np.pi * frequency * t)).astype("<i2").tobytes()


def error_body(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    """ElevenLabs' error JSON: ``{"detail": {"status": code, "message": message}}``."""
    if code is None:
        code = {
            400: "invalid_request",
            401: "invalid_api_key",
            403: "missing_permissions",
            404: "not_found",
            429: "too_many_concurrent_requests",
        }.get(status, "internal_server_error" if status >= 500 else "error")
    return {"detail": {"status": code, "message": message}}


def validation_error(loc: Sequence[str | int], msg: str, kind: str) -> dict[str, Any]:
    """FastAPI's 422 body, as ElevenLabs sends it for a malformed request."""
    return {"detail": [{"loc": ["body", *loc], "msg": msg, "type": kind}]}


class FakeElevenLabs(LoopbackServer):
    """An ElevenLabs-compatible server on 127.0.0.1 (a random port).

    ``api_key``: when set, requests must carry ``xi-api-key: <api_key>`` (401 otherwise).
    ``voices``: the account's voices (listed, and the only ids text-to-speech accepts
    unless ``accept_any_voice``). ``models``: model ids accepted (None: any).
    ``seconds_per_char`` / ``min_seconds``: how long the tone for a text is.
    ``chunk_bytes``: bytes per HTTP chunk (may be odd: HTTP does not care about samples).
    ``delay``: seconds before answering; ``chunk_delay``: between chunks.
    ``max_chars``: longest text accepted in one request (400 above it).
    ``frequency`` / ``amplitude``: the tone. ``stray_byte``: append one byte after the
    audio of each answer (half a sample, as a broken proxy might), to test that a
    client does not glue it to what comes next.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        voices: Sequence[FakeVoice] = DEFAULT_VOICES,
        accept_any_voice: bool = False,
        models: Sequence[str] | None = DEFAULT_MODELS,
        seconds_per_char: float = 0.02,
        min_seconds: float = 0.1,
        chunk_bytes: int = 4096,
        delay: float = 0.0,
        chunk_delay: float = 0.0,
        max_chars: int = 5_000,
        frequency: float = 440.0,
        amplitude: float = 0.5,
        stray_byte: bool = False,
        host: str = "127.0.0.1",
    ) -> None:
        if chunk_bytes < 1:
            raise ValueError("chunk_bytes must be positive")
        super().__init__(host=host)
        self.api_key = api_key
        self.voices = list(voices)
        self.accept_any_voice = accept_any_voice
        self.models = None if models is None else list(models)
        self.seconds_per_char = seconds_per_char
        self.min_seconds = min_seconds
        self.chunk_bytes = chunk_bytes
        self.delay = delay
        self.chunk_delay = chunk_delay
        self.max_chars = max_chars
        self.frequency = frequency
        self.amplitude = amplitude
        self.stray_byte = stray_byte
        self.requests: list[RecordedRequest] = []
        self._failures = FailureQueue()
        self._cuts: list[_Cut] = []
        self._ids = itertools.count(1)

    # -- lifecycle (start, close, ``async with``, ``url``: LoopbackServer) --

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/text-to-speech/{voice_id}/stream", self._tts)
        app.router.add_get("/v2/voices", self._voices_v2)
        app.router.add_get("/v1/voices", self._voices_v1)
        app.router.add_get("/v1/voices/{voice_id}", self._voice)

    @property
    def base_url(self) -> str:
        """The same as ``url``: what ``ELEVENLABS_BASE_URL`` is set to."""
        return self.url

    @property
    def voice_ids(self) -> list[str]:
        return [v.voice_id for v in self.voices]

    # -- the audio ---------------------------------------------------------

    def seconds_for(self, text: str) -> float:
        return max(self.min_seconds, self.seconds_per_char * len(text))

    def pcm_for(self, text: str, sample_rate: int = 22_050) -> bytes:
        """The exact s16le mono PCM the server sends for ``text`` at ``sample_rate``."""
        frames = round(self.seconds_for(text) * sample_rate)
        return _tone(frames, sample_rate, self.frequency, self.amplitude)

    # -- what arrived ------------------------------------------------------

    @property
    def tts_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.is_tts]

    @property
    def last_tts(self) -> RecordedRequest:
        return self._last(self.tts_requests, "text-to-speech request")

    # -- scripted failures -------------------------------------------------

    def fail_next(
        self,
        status: int = 503,
        *,
        times: int = 1,
        skip: int = 0,
        retry_after: float | str | None = None,
        message: str | None = None,
        code: str | None = None,
        endpoint: Endpoint = "tts",
    ) -> None:
        """Answer the next ``times`` matching requests with HTTP ``status`` (ElevenLabs'
        error JSON, ``code`` as its ``status`` field), after letting ``skip`` through."""
        self._failures.add(
            status,
            times=times,
            keys=None if endpoint == "any" else [endpoint],
            retry_after=retry_after,
            message=message,
            skip=skip,
            code=code,
        )

    def bad_body_next(self, *, times: int = 1, skip: int = 0, endpoint: Endpoint = "tts") -> None:
        """Answer the next ``times`` matching requests 200 with an HTML page (:data:`HTML_PAGE`,
        ``text/html``), as a proxy or captive portal would, after letting ``skip`` through.
        Queued in order with :meth:`fail_next`'s failures."""
        self._failures.add(
            200,
            times=times,
            keys=None if endpoint == "any" else [endpoint],
            skip=skip,
            body="html",
        )

    def cut_next(
        self, *, after_bytes: int = 8_000, times: int = 1, skip: int = 0, reset: bool = False
    ) -> None:
        """Drop the connection of the next ``times`` text-to-speech answers after
        ``after_bytes`` bytes of audio (after letting ``skip`` answers through whole).

        The chunked body never gets its terminator, as when a proxy or the service
        goes away mid-stream; ``reset=True`` aborts the socket instead of closing it.
        """
        for i in range(times):
            self._cuts.append(_Cut(after_bytes, reset, skip if i == 0 else 0))

    def clear(self) -> None:
        """Forget recorded requests and pending failures."""
        self.requests.clear()
        self._failures.clear()
        self._cuts.clear()

    def _take_cut(self) -> _Cut | None:
        if not self._cuts:
            return None
        cut = self._cuts[0]
        if cut.skip > 0:
            cut.skip -= 1
            return None
        return self._cuts.pop(0)

    # -- handlers ----------------------------------------------------------

    async def _record(self, request: web.Request) -> RecordedRequest:
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw
        record = RecordedRequest(
            request.method,
            request.path,
            dict(request.query),
            CIMultiDict(request.headers),
            body,
        )
        self.requests.append(record)
        return record

    @staticmethod
    def _json(record: RecordedRequest, payload: Any, status: int = 200, **kw: Any) -> web.Response:
        record.status = status
        record.finished_at = time.monotonic()
        return web.json_response(payload, status=status, **kw)

    def _error(
        self,
        record: RecordedRequest,
        status: int,
        message: str,
        code: str | None = None,
        *,
        retry_after: float | str | None = None,
    ) -> web.Response:
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        return self._json(record, error_body(status, message, code), status, headers=headers)

    def _check(self, record: RecordedRequest, endpoint: Endpoint) -> web.Response | None:
        """Auth, then scripted failures: the response to send instead, if any."""
        if self.api_key is not None:
            sent = record.api_key
            if not sent:
                return self._error(
                    record, 401, "Please provide an API key in the xi-api-key header.",
                    "needs_authorization",
                )  # fmt: skip
            if sent != self.api_key:
                return self._error(record, 401, "Invalid API key", "invalid_api_key")
        failure = self._failures.take(endpoint)
        if failure is not None and failure.details.get("body") == "html":
            record.status = 200
            record.finished_at = time.monotonic()
            return web.Response(text=HTML_PAGE, content_type="text/html")
        if failure is not None:
            message = failure.message or f"Injected failure (HTTP {failure.status})."
            return self._error(
                record,
                failure.status,
                message,
                failure.details["code"],
                retry_after=failure.retry_after,
            )
        return None

    def _find_voice(self, voice_id: str) -> FakeVoice | None:
        return next((v for v in self.voices if v.voice_id == voice_id), None)

    def _voice_not_found(self, record: RecordedRequest, voice_id: str) -> web.Response:
        return self._error(
            record,
            404,
            f"A voice with the voice_id {voice_id} was not found.",
            "voice_not_found",
        )

    async def _voices_v2(self, request: web.Request) -> web.StreamResponse:
        record = await self._record(request)
        refusal = self._check(record, "voices")
        if refusal is not None:
            return refusal
        try:
            size = int(request.query.get("page_size", "10"))
            start = int(request.query.get("next_page_token") or 0)
        except ValueError:
            return self._json(
                record, validation_error(["page_size"], "not an integer", "int_parsing"), 422
            )
        if not 1 <= size <= 100:
            return self._json(
                record,
                validation_error(["page_size"], "must be between 1 and 100", "value_error"),
                422,
            )
        voices = self.voices
        search = request.query.get("search", "").lower()
        if search:
            voices = [v for v in voices if search in v.name.lower()]
        page = voices[start : start + size]
        more = start + size < len(voices)
        return self._json(
            record,
            {
                "voices": [v.as_json() for v in page],
                "has_more": more,
                "total_count": len(voices),
                "next_page_token": str(start + size) if more else None,
            },
        )

    async def _voices_v1(self, request: web.Request) -> web.StreamResponse:
        record = await self._record(request)
        refusal = self._check(record, "voices")
        if refusal is not None:
            return refusal
        return self._json(record, {"voices": [v.as_json() for v in self.voices]})

    async def _voice(self, request: web.Request) -> web.StreamResponse:
        record = await self._record(request)
        refusal = self._check(record, "voices")
        if refusal is not None:
            return refusal
        voice_id = request.match_info["voice_id"]
        voice = self._find_voice(voice_id)
        if voice is None:
            return self._voice_not_found(record, voice_id)
        return self._json(record, voice.as_json())

    def _validate_tts(self, record: RecordedRequest, voice_id: str) -> web.Response | None:
        if not self.accept_any_voice and self._find_voice(voice_id) is None:
            return self._voice_not_found(record, voice_id)
        body = record.body
        if not isinstance(body, dict):
            return self._json(
                record, validation_error([], "Input should be a valid dictionary", "dict_type"), 422
            )
        text = body.get("text")
        if not isinstance(text, str):
            return self._json(record, validation_error(["text"], "Field required", "missing"), 422)
        if not text.strip():
            return self._error(record, 400, "The text must not be empty.", "empty_text")
        if len(text) > self.max_chars:
            return self._error(
                record,
                400,
                f"You are sending {len(text)} characters; the maximum for one request is"
                f" {self.max_chars}.",
                "max_character_limit_exceeded",
            )
        model = body.get("model_id")
        if model is not None and self.models is not None and model not in self.models:
            return self._error(
                record, 400, f"A model with model ID {model} does not exist.", "model_not_found"
            )
        settings = body.get("voice_settings")
        if settings is not None:
            if not isinstance(settings, dict):
                return self._json(
                    record,
                    validation_error(["voice_settings"], "Input should be an object", "dict_type"),
                    422,
                )
            ranges = {
                "stability": (0, 1),
                "similarity_boost": (0, 1),
                "style": (0, 1),
                "speed": (0.7, 1.2),
            }
            for key, (low, high) in ranges.items():
                value = settings.get(key)
                if value is None:
                    continue
                if not isinstance(value, int | float) or not low <= value <= high:
                    return self._json(
                        record,
                        validation_error(
                            ["voice_settings", key],
                            f"Input should be between {low} and {high}",
                            "value_error",
                        ),
                        422,
                    )
            boost = settings.get("use_speaker_boost")
            if boost is not None and not isinstance(boost, bool):
                return self._json(
                    record,
                    validation_error(
                        ["voice_settings", "use_speaker_boost"], "Input should be a bool", "bool"
                    ),
                    422,
                )
        fmt = record.output_format or "mp3_44100_128"
        rate = fmt[4:] if fmt.startswith("pcm_") else ""
        if not rate.isdigit() or int(rate) not in PCM_RATES:
            return self._error(
                record,
                400,
                f"This fake server only produces raw PCM (pcm_<rate>), not {fmt}.",
                "invalid_output_format",
            )
        return None

    async def _tts(self, request: web.Request) -> web.StreamResponse:
        record = await self._record(request)
        refusal = self._check(record, "tts")
        if refusal is not None:
            return refusal
        voice_id = request.match_info["voice_id"]
        invalid = self._validate_tts(record, voice_id)
        if invalid is not None:
            return invalid
        if self.delay:
            await asyncio.sleep(self.delay)
        text: str = record.body["text"]
        rate = int(record.output_format[4:])  # type: ignore[index]
        audio = self.pcm_for(text, rate)
        if self.stray_byte:
            audio += b"\x7f"
        cut = self._take_cut()
        response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "audio/pcm",
                "request-id": f"fake-request-{next(self._ids)}",
                "x-character-count": str(len(text)),
            },
        )
        response.enable_chunked_encoding()
        record.status = 200
        await response.prepare(request)
        limit = len(audio) if cut is None else min(cut.after_bytes, len(audio))
        sent = 0
        while sent < limit:
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            piece = audio[sent : min(sent + self.chunk_bytes, limit)]
            await response.write(piece)
            sent += len(piece)
            record.bytes_sent = sent
        if cut is not None:
            # The body never gets its terminating chunk: the client sees a broken stream.
            if request.transport is not None:
                if cut.reset:
                    request.transport.abort()
                else:
                    request.transport.close()
            return response
        await response.write_eof()
        record.finished_at = time.monotonic()
        return response
