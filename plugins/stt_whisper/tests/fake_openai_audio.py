"""A loopback fake of OpenAI's transcription endpoint, for tests (no internet, no account).

:class:`FakeTranscriptionServer` speaks the documented wire format of
``POST /v1/audio/transcriptions`` closely enough for the real ``openai`` client:
a ``multipart/form-data`` body with ``file`` (the audio, with a filename), ``model``,
and optionally ``prompt``, ``language``, ``response_format`` (``json``, ``text``,
``verbose_json``, ``srt``, ``vtt``) and ``temperature``; ``Authorization: Bearer``;
errors in OpenAI's JSON shape (``{"error": {"message", "type", "param", "code"}}``).

It checks what a client sends (a file is present and a WAV file is a valid one, the
model is known, the language is an ISO 639-1 code), records every request, and can
fail on demand: an HTTP status for the next N requests (401, 429 with ``Retry-After``,
5xx...), a dropped connection, a malformed 200, an HTML page (a captive portal's),
a slow answer::

    async with FakeTranscriptionServer(reply="turn on the lights", api_key="sk-test") as server:
        transcriber = OpenAIWhisperTranscriber(
            environ={"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": server.base_url}
        )
        ...
        assert server.last.prompt == "Alice, Bob"
        assert server.last.wav.sample_rate == 16_000

Other packages' end-to-end tests (a voice pipeline) import it from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import io
import time
import wave
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web
from multidict import CIMultiDict

from hark import AudioClip
from hark.audio import read_wav
from hark.testing.loopback import FailureQueue, LoopbackServer

__all__ = [
    "DEFAULT_MODELS",
    "DEFAULT_TEXT",
    "HTML_PAGE",
    "MODELS_PATH",
    "TRANSCRIPTIONS_PATH",
    "FakeTranscriptionServer",
    "RecordedTranscription",
    "error_body",
]

DEFAULT_TEXT = "Hello from the fake transcription server."
DEFAULT_MODELS: tuple[str, ...] = (
    "whisper-1",
    "gpt-4o-transcribe",
    "gpt-4o-mini-transcribe",
)
TRANSCRIPTIONS_PATH = "/v1/audio/transcriptions"
MODELS_PATH = "/v1/models"
# The formats OpenAI accepts, by file extension.
AUDIO_EXTENSIONS = frozenset(
    {"flac", "mp3", "mp4", "mpeg", "mpga", "m4a", "ogg", "oga", "wav", "webm"}
)
RESPONSE_FORMATS = frozenset({"json", "text", "srt", "verbose_json", "vtt"})
MAX_FILE_BYTES = 25 * 1024 * 1024
# ISO 639-1 codes Whisper supports (the API rejects others).
LANGUAGES = frozenset(
    [
        "af",
        "am",
        "ar",
        "as",
        "az",
        "ba",
        "be",
        "bg",
        "bn",
        "bo",
        "br",
        "bs",
        "ca",
        "cs",
        "cy",
        "da",
        "de",
        "el",
        "en",
        "es",
        "et",
        "eu",
        "fa",
        "fi",
        "fo",
        "fr",
        "gl",
        "gu",
        "ha",
        "haw",
        "he",
        "hi",
        "hr",
        "ht",
        "hu",
        "hy",
        "id",
        "is",
        "it",
        "ja",
        "jw",
        "ka",
        "kk",
        "km",
        "kn",
        "ko",
        "la",
        "lb",
        "ln",
        "lo",
        "lt",
        "lv",
        "mg",
        "mi",
        "mk",
        "ml",
        "mn",
        "mr",
        "ms",
        "mt",
        "my",
        "ne",
        "nl",
        "nn",
        "no",
        "oc",
        "pa",
        "pl",
        "ps",
        "pt",
        "ro",
        "ru",
        "sa",
        "sd",
        "si",
        "sk",
        "sl",
        "sn",
        "so",
        "sq",
        "sr",
        "su",
        "sv",
        "sw",
        "ta",
        "te",
        "tg",
        "th",
        "tk",
        "tl",
        "tr",
        "tt",
        "uk",
        "ur",
        "uz",
        "vi",
        "yi",
        "yo",
        "yue",
        "zh",
    ]
)
LANGUAGE_NAMES = {"en": "english", "fr": "french", "de": "german", "es": "spanish"}

_STATUS_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    413: ("invalid_request_error", "file_too_large"),
    429: ("requests", "rate_limit_exceeded"),
}


def error_body(status: int, message: str, *, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error object for ``status``."""
    kind, code = _STATUS_TYPES.get(status, ("server_error" if status >= 500 else "api_error", None))
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


@dataclass(slots=True)
class RecordedTranscription:
    """One request as the server received it."""

    method: str
    path: str
    headers: CIMultiDict[str]
    fields: dict[str, str] = field(default_factory=dict)
    file: bytes | None = None
    filename: str | None = None
    content_type: str | None = None
    received_at: float = field(default_factory=time.monotonic)

    @property
    def model(self) -> str | None:
        return self.fields.get("model")

    @property
    def prompt(self) -> str | None:
        return self.fields.get("prompt")

    @property
    def language(self) -> str | None:
        return self.fields.get("language")

    @property
    def response_format(self) -> str:
        return self.fields.get("response_format") or "json"

    @property
    def bearer(self) -> str | None:
        """The bearer token sent in ``Authorization`` (tests compare it; never print it)."""
        value = self.headers.get("Authorization", "")
        return value[7:] if value.startswith("Bearer ") else None

    @property
    def wav(self) -> AudioClip:
        """The uploaded file read as a 16-bit PCM WAV (raises if it is not one)."""
        if self.file is None:
            raise AssertionError("the request carried no file")
        return read_wav(self.file)

    def __repr__(self) -> str:  # never the Authorization header
        size = len(self.file) if self.file is not None else 0
        return f"<RecordedTranscription {self.method} {self.path} {self.fields} file={size}B>"


ReplyFunc = Callable[[RecordedTranscription], "str | Awaitable[str]"]

#: What :meth:`FakeTranscriptionServer.bad_body_next` answers with: a proxy's or captive
#: portal's page.
HTML_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>Sign in</title></head>\n"
    '<body><p>Please <a href="http://portal.example/login">sign in</a>.</p></body>\n'
    "</html>\n"
)


def _check_wav(data: bytes) -> str | None:
    """Why ``data`` is not a usable WAV file, or None."""
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            if wav.getnframes() == 0:
                return "the audio file is empty"
            if wav.getframerate() < 1000 or wav.getnchannels() not in (1, 2):
                return "unsupported WAV parameters"
            got = len(wav.readframes(wav.getnframes()))
            if got != wav.getnframes() * wav.getsampwidth() * wav.getnchannels():
                return "the WAV file is truncated"
    except (wave.Error, EOFError) as exc:
        return f"not a valid WAV file ({exc})"
    return None


class FakeTranscriptionServer(LoopbackServer):
    """OpenAI's ``POST /v1/audio/transcriptions`` (and ``GET /v1/models``) on 127.0.0.1
    (a random port).

    ``reply``: the transcript, or a function of the :class:`RecordedTranscription`
    returning it (sync or async). ``api_key``: when set, requests must carry
    ``Authorization: Bearer <api_key>``. ``models``: accepted models (others get 404
    unless ``accept_any_model``). ``delay``: seconds before answering (for timeouts
    and cancellation).
    """

    def __init__(
        self,
        *,
        reply: str | ReplyFunc = DEFAULT_TEXT,
        api_key: str | None = None,
        models: Sequence[str] = DEFAULT_MODELS,
        accept_any_model: bool = False,
        delay: float = 0.0,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(host=host)
        self.reply = reply
        self.api_key = api_key
        self.models = list(models)
        self.accept_any_model = accept_any_model
        self.delay = delay
        self.requests: list[RecordedTranscription] = []
        #: ``GET /v1/models`` requests (what a client's warm-up sends), apart from
        #: the transcriptions in :attr:`requests`.
        self.model_requests: list[RecordedTranscription] = []
        self._failures = FailureQueue()
        self._drops = 0
        self._malformed = 0

    # -- lifecycle (start, close, ``async with``, ``url``: LoopbackServer) --

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_FILE_BYTES + 1024 * 1024)
        app.router.add_post(TRANSCRIPTIONS_PATH, self._transcriptions)
        app.router.add_get(MODELS_PATH, self._models)
        return app

    @property
    def base_url(self) -> str:
        """The API base URL to give a client (``OPENAI_BASE_URL``): ``.../v1``."""
        return f"{self.url}/v1"

    # -- what arrived ------------------------------------------------------

    @property
    def last(self) -> RecordedTranscription:
        return self._last(self.requests, "transcription request")

    # -- scripted failures -------------------------------------------------

    def fail_next(
        self,
        status: int = 503,
        *,
        times: int = 1,
        retry_after: float | str | None = None,
        message: str | None = None,
    ) -> None:
        """Answer the next ``times`` requests with HTTP ``status`` (an OpenAI error body),
        with a ``Retry-After`` header when ``retry_after`` is given."""
        self._failures.add(status, times=times, retry_after=retry_after, message=message)

    def drop_next(self, times: int = 1) -> None:
        """Close the connection of the next ``times`` requests without answering."""
        self._drops += times

    def bad_body_next(self, times: int = 1) -> None:
        """Answer the next ``times`` requests 200 with an HTML page (:data:`HTML_PAGE`,
        ``text/html``), as a proxy or captive portal would. Queued in order with
        :meth:`fail_next`'s failures."""
        self._failures.add(200, times=times, body="html")

    def malformed_next(self, times: int = 1) -> None:
        """Answer the next ``times`` requests 200 with a body that is not JSON."""
        self._malformed += times

    def clear(self) -> None:
        """Forget recorded requests and pending failures."""
        self.requests.clear()
        self.model_requests.clear()
        self._failures.clear()
        self._drops = self._malformed = 0

    # -- handler -----------------------------------------------------------

    def _error(
        self,
        status: int,
        message: str,
        *,
        retry_after: float | str | None = None,
        param: str | None = None,
    ) -> web.Response:
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        return web.json_response(
            error_body(status, message, param=param), status=status, headers=headers
        )

    async def _read(self, request: web.Request) -> RecordedTranscription | web.Response:
        record = RecordedTranscription(request.method, request.path, CIMultiDict(request.headers))
        self.requests.append(record)
        if not request.content_type.startswith("multipart/"):
            return self._error(
                400, "Expected a multipart/form-data body with the audio file.", param="file"
            )
        try:
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader) or part.name is None:
                    continue
                if part.filename is not None or part.name == "file":
                    record.file = bytes(await part.read())
                    record.filename = part.filename
                    record.content_type = part.headers.get("Content-Type")
                else:
                    record.fields[part.name] = await part.text()
        except ValueError as exc:
            return self._error(400, f"Could not parse the multipart body: {exc}")
        return record

    def _validate(self, record: RecordedTranscription) -> web.Response | None:
        if record.file is None:
            return self._error(400, "You must provide a file.", param="file")
        if len(record.file) > MAX_FILE_BYTES:
            return self._error(413, "Maximum content size limit (26214400) exceeded.", param="file")
        extension = (record.filename or "").rsplit(".", 1)[-1].lower()
        if not record.filename or "." not in record.filename or extension not in AUDIO_EXTENSIONS:
            formats = sorted(AUDIO_EXTENSIONS)
            return self._error(
                400, f"Invalid file format. Supported formats: {formats}", param="file"
            )
        if extension == "wav":
            problem = _check_wav(record.file)
            if problem:
                return self._error(
                    400, f"The audio file could not be decoded: {problem}", param="file"
                )
        model = record.model
        if not model:
            return self._error(400, "you must provide a model parameter", param="model")
        if not self.accept_any_model and model not in self.models:
            return self._error(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                param="model",
            )
        if record.language is not None and record.language not in LANGUAGES:
            return self._error(
                400,
                f"Invalid language '{record.language}'. Language parameter must be specified"
                " in ISO-639-1 format.",
                param="language",
            )
        if record.response_format not in RESPONSE_FORMATS:
            return self._error(
                400, f"Invalid response_format '{record.response_format}'.", param="format"
            )
        return None

    async def _transcriptions(self, request: web.Request) -> web.StreamResponse:
        record = await self._read(request)
        if isinstance(record, web.Response):
            return record
        if self.api_key is not None and record.bearer != self.api_key:
            return self._error(
                401, "Incorrect API key provided. You can find your API key in your account."
            )
        if self._drops:
            self._drops -= 1
            if request.transport is not None:
                request.transport.abort()
            raise web.HTTPInternalServerError()  # never sent: the connection is gone
        failure = self._failures.take()
        if failure is not None and failure.details.get("body") == "html":
            return web.Response(text=HTML_PAGE, content_type="text/html")
        if failure is not None:
            message = failure.message or f"Injected failure (HTTP {failure.status})."
            return self._error(failure.status, message, retry_after=failure.retry_after)
        refusal = self._validate(record)
        if refusal is not None:
            return refusal
        if self.delay:
            await asyncio.sleep(self.delay)
        if self._malformed:
            self._malformed -= 1
            return web.Response(
                text='{"text": "cut off', content_type="application/json", status=200
            )
        text = await self._text(record)
        return self._format(record, text)

    async def _models(self, request: web.Request) -> web.Response:
        record = RecordedTranscription(request.method, request.path, CIMultiDict(request.headers))
        self.model_requests.append(record)
        if self.api_key is not None and record.bearer != self.api_key:
            return self._error(
                401, "Incorrect API key provided. You can find your API key in your account."
            )
        data = [
            {"id": m, "object": "model", "created": 1700000000, "owned_by": "openai"}
            for m in self.models
        ]
        return web.json_response({"object": "list", "data": data})

    async def _text(self, record: RecordedTranscription) -> str:
        reply: Any = self.reply
        if callable(reply):
            reply = reply(record)
            if inspect.isawaitable(reply):
                reply = await reply
        return str(reply)

    def _duration(self, record: RecordedTranscription) -> float:
        with contextlib.suppress(Exception):
            return record.wav.duration
        return 0.0

    def _format(self, record: RecordedTranscription, text: str) -> web.Response:
        fmt = record.response_format
        duration = self._duration(record)
        if fmt == "text":
            return web.Response(text=text + "\n", content_type="text/plain")
        if fmt in ("srt", "vtt"):
            end = _timestamp(duration, "," if fmt == "srt" else ".")
            start = _timestamp(0.0, "," if fmt == "srt" else ".")
            if fmt == "srt":
                body = f"1\n{start} --> {end}\n{text}\n\n"
            else:
                body = f"WEBVTT\n\n{start} --> {end}\n{text}\n\n"
            return web.Response(text=body, content_type="text/plain")
        usage = {"type": "duration", "seconds": max(1, round(duration))}
        if fmt == "verbose_json":
            language = record.language or "en"
            return web.json_response(
                {
                    "task": "transcribe",
                    "language": LANGUAGE_NAMES.get(language, language),
                    "duration": duration,
                    "text": text,
                    "segments": [
                        {
                            "id": 0,
                            "seek": 0,
                            "start": 0.0,
                            "end": duration,
                            "text": text,
                            "tokens": [],
                            "temperature": 0.0,
                            "avg_logprob": -0.2,
                            "compression_ratio": 1.0,
                            "no_speech_prob": 0.01,
                        }
                    ],
                    "usage": usage,
                }
            )
        return web.json_response({"text": text, "usage": usage})


def _timestamp(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02}:{minutes:02}:{secs:02}{separator}{millis:03}"
