"""The loopback fake of OpenAI's transcription endpoint, checked with plain HTTP requests
(so the fake itself speaks the documented format, independently of the client)."""

from __future__ import annotations

import aiohttp
import pytest
from fake_openai_audio import FakeTranscriptionServer
from whisper_support import KEY

from hark.audio import wav_bytes
from hark.testing.fakes import tone

WAV = wav_bytes([tone(0.5, 16_000)])


def form(file: bytes | None = WAV, filename: str = "clip.wav", **fields: str) -> aiohttp.FormData:
    data = aiohttp.FormData(default_to_multipart=True)
    if file is not None:
        data.add_field("file", file, filename=filename, content_type="audio/wav")
    for name, value in fields.items():
        data.add_field(name, value)
    return data


async def post(server: FakeTranscriptionServer, data, *, key: str | None = KEY):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{server.base_url}/audio/transcriptions", data=data, headers=headers) as r,
    ):
        body = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, dict(r.headers), body


async def test_json_answer_and_recording(server):
    server.reply = lambda request: f"heard {request.wav.duration:.1f}s"
    status, _, body = await post(server, form(model="whisper-1", prompt="Alice", language="en"))
    assert status == 200 and body["text"] == "heard 0.5s"
    assert body["usage"]["type"] == "duration"
    request = server.last
    assert request.fields == {"model": "whisper-1", "prompt": "Alice", "language": "en"}
    assert request.bearer == KEY and request.filename == "clip.wav"


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [("text", "hi there\n"), ("srt", "00:00:00,000 --> 00:00:00,500"), ("vtt", "WEBVTT")],
)
async def test_plain_formats(server, fmt, expected):
    server.reply = "hi there"
    status, _, body = await post(server, form(model="whisper-1", response_format=fmt))
    assert status == 200 and expected in body


async def test_verbose_json(server):
    status, _, body = await post(
        server, form(model="whisper-1", response_format="verbose_json", language="fr")
    )
    assert status == 200 and body["language"] == "french"
    assert body["duration"] == pytest.approx(0.5) and body["segments"][0]["end"] == body["duration"]


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        (form(file=None, model="whisper-1"), 400, "provide a file"),
        (form(model="whisper-1", filename="clip.txt"), 400, "Invalid file format"),
        (form(file=b"RIFF....WAVEjunk", model="whisper-1"), 400, "could not be decoded"),
        (form(file=WAV[: len(WAV) - 10], model="whisper-1"), 400, "truncated"),
        (form(), 400, "model parameter"),
        (form(model="whisper-9"), 404, "does not exist"),
        (form(model="whisper-1", language="english"), 400, "ISO-639-1"),
        (form(model="whisper-1", response_format="xml"), 400, "response_format"),
    ],
)
async def test_rejects_what_openai_rejects(server, data, status, words):
    got, _, body = await post(server, data)
    assert got == status
    assert words in body["error"]["message"]
    assert set(body["error"]) == {"message", "type", "param", "code"}


async def test_rejects_a_body_that_is_not_multipart(server):
    status, _, body = await post(server, aiohttp.FormData({"model": "whisper-1"}))
    assert status == 400 and "multipart/form-data" in body["error"]["message"]


async def test_wrong_or_missing_key(server):
    for key in ("sk-wrong", None):
        status, _, body = await post(server, form(model="whisper-1"), key=key)
        assert status == 401 and body["error"]["code"] == "invalid_api_key"


async def test_injected_failures(server):
    server.fail_next(429, retry_after=7)
    server.fail_next(503)
    status, headers, body = await post(server, form(model="whisper-1"))
    assert status == 429 and headers["Retry-After"] == "7"
    assert body["error"]["type"] == "requests"
    status, _, body = await post(server, form(model="whisper-1"))
    assert status == 503 and body["error"]["type"] == "server_error"
    status, _, _ = await post(server, form(model="whisper-1"))
    assert status == 200
    assert len(server.requests) == 3


async def test_dropped_and_malformed(server):
    server.drop_next()
    with pytest.raises(aiohttp.ClientError):
        await post(server, form(model="whisper-1"))
    server.malformed_next()
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{server.base_url}/audio/transcriptions",
            data=form(model="whisper-1"),
            headers={"Authorization": f"Bearer {KEY}"},
        ) as response,
    ):
        assert response.status == 200
        with pytest.raises(ValueError):
            await response.json()


async def test_async_reply_function_and_any_model():
    async def reply(request):
        return f"model {request.model}"

    async with FakeTranscriptionServer(reply=reply, accept_any_model=True) as server:
        status, _, body = await post(server, form(model="my-own-whisper"), key=None)
        assert status == 200 and body["text"] == "model my-own-whisper"
