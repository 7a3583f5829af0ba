"""The loopback Azure TTS server itself, spoken to with plain aiohttp requests: it must
hold clients to Azure's documented protocol, or the plugin's tests would prove little."""

from __future__ import annotations

import aiohttp
import pytest
from azure_support import KEY
from fake_azure import FakeAzureTTS, tone_pcm

SSML = (
    '<speak version="1.0" xmlns="http://www.w3.org/2001/10/synthesis" xml:lang="en-US">'
    '<voice name="en-US-JennyNeural">Hello &amp; goodbye</voice></speak>'
)
HEADERS = {
    "Ocp-Apim-Subscription-Key": KEY,
    "Content-Type": "application/ssml+xml",
    "X-Microsoft-OutputFormat": "raw-48khz-16bit-mono-pcm",
    "User-Agent": "fake-server-test",
}


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


async def post(http, azure, body=SSML, **changes):
    headers = {k: v for k, v in {**HEADERS, **changes}.items() if v is not None}
    async with http.post(
        f"{azure.url}/cognitiveservices/v1", data=body.encode(), headers=headers
    ) as response:
        return response.status, response.headers.copy(), await response.read()


async def test_synthesis_answers_chunked_pcm(azure, http) -> None:
    status, headers, body = await post(http, azure)
    assert status == 200
    assert headers.get("Transfer-Encoding") == "chunked"
    assert body == tone_pcm("Hello & goodbye", "en-US-JennyNeural")
    assert body == azure.expected_pcm("Hello & goodbye", "en-US-JennyNeural")
    request = azure.last_synthesis
    assert request.status == 200 and request.key == KEY
    assert request.ssml.text == "Hello & goodbye"
    assert request.ssml.voice == "en-US-JennyNeural" and request.ssml.lang == "en-US"


async def test_tone_depends_on_text_voice_and_prosody() -> None:
    short = tone_pcm("Hi", "en-US-JennyNeural")
    long = tone_pcm("Hi there, how are you?", "en-US-JennyNeural")
    assert len(long) > len(short) > 0
    assert tone_pcm("Hi", "en-US-GuyNeural") != short
    assert len(tone_pcm("Hi", "en-US-JennyNeural", rate="+100%")) < len(short)
    assert tone_pcm("Hi", "en-US-JennyNeural", pitch="+2st") != short
    assert tone_pcm("  ", "en-US-JennyNeural") == b""
    assert len(tone_pcm("Hi", "en-US-JennyNeural", sample_rate=24_000)) * 2 == len(short)


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({"Ocp-Apim-Subscription-Key": None}, 401),
        ({"Ocp-Apim-Subscription-Key": "wrong"}, 401),
        ({"Content-Type": "text/plain"}, 415),
        ({"X-Microsoft-OutputFormat": "audio-24khz-48kbitrate-mono-mp3"}, 400),
        ({"X-Microsoft-OutputFormat": None}, 400),
        ({"User-Agent": "x" * 300}, 400),
    ],
)
async def test_headers_are_checked(azure, http, changes, status) -> None:
    got, headers, body = await post(http, azure, **changes)
    assert got == status
    assert azure.last_synthesis.status == status
    if status == 401:
        assert headers["Content-Type"].startswith("application/json")
        assert b"invalid subscription key" in body


@pytest.mark.parametrize(
    "body",
    [
        "Hello & goodbye",  # not XML
        # An unescaped "<" in the text.
        "<speak version='1.0' xml:lang='en-US'><voice name='en-US-JennyNeural'>a < b</voice>"
        "</speak>",
        "<speak xml:lang='en-US'><voice name='en-US-JennyNeural'>hi</voice></speak>",
        "<speak version='1.0'><voice name='en-US-JennyNeural'>hi</voice></speak>",
        "<speak version='1.0' xml:lang='en-US'>no voice</speak>",
        "<speak version='1.0' xml:lang='en-US'><voice>hi</voice></speak>",
        "<speak version='1.0' xml:lang='en-US'><voice name='xx-XX-Nobody'>hi</voice></speak>",
        "<voice name='en-US-JennyNeural'>hi</voice>",
    ],
)
async def test_bad_ssml_is_refused(azure, http, body) -> None:
    status, _, _ = await post(http, azure, body=body)
    assert status == 400
    assert azure.last_synthesis.ssml is None


async def test_ssml_without_namespace_and_long_voice_name(azure, http) -> None:
    # Azure's own sample omits xmlns; the long "Name" form is accepted too.
    body = (
        "<speak version='1.0' xml:lang='en-US'><voice xml:lang='en-US' name="
        "'Microsoft Server Speech Text to Speech Voice (en-US, GuyNeural)'>"
        "<prosody rate='+10%' pitch='low'>hi</prosody></voice></speak>"
    )
    status, _, _ = await post(http, azure, body=body)
    assert status == 200
    ssml = azure.last_synthesis.ssml
    assert (ssml.rate, ssml.pitch, ssml.voice_lang) == ("+10%", "low", "en-US")


async def test_voices_list(azure, http) -> None:
    async with http.get(
        f"{azure.url}/cognitiveservices/voices/list",
        headers={"Ocp-Apim-Subscription-Key": KEY},
    ) as response:
        assert response.status == 200
        voices = await response.json()
    assert isinstance(voices, list) and voices
    for voice in voices:
        for key in ("Name", "DisplayName", "ShortName", "Gender", "Locale", "LocaleName"):
            assert isinstance(voice[key], str) and voice[key]
        assert voice["ShortName"].startswith(voice["Locale"] + "-")
        assert voice["Name"].endswith(f"({voice['Locale']}, {voice['ShortName'].split('-')[-1]})")
        assert voice["SampleRateHertz"].isdigit() and voice["WordsPerMinute"].isdigit()
    assert "en-US-AmberNeural" in {v["ShortName"] for v in voices}

    async with http.get(f"{azure.url}/cognitiveservices/voices/list") as response:
        assert response.status == 401


async def test_failures_on_demand(azure, http) -> None:
    azure.fail_next(429, retry_after=7)
    azure.fail_next(500, times=2)
    azure.fail_next(503, endpoint="voices")
    status, headers, body = await post(http, azure)
    assert (status, headers["Retry-After"]) == (429, "7")
    assert b'"code": "429"' in body
    assert (await post(http, azure))[0] == 500
    assert (await post(http, azure))[0] == 500
    assert (await post(http, azure))[0] == 200
    async with http.get(
        f"{azure.url}/cognitiveservices/voices/list", headers={"Ocp-Apim-Subscription-Key": KEY}
    ) as response:
        assert response.status == 503
    assert [r.status for r in azure.requests] == [429, 500, 500, 200, 503]
    azure.clear()
    assert azure.requests == []


async def test_cut_stream_breaks_the_chunked_body(azure, http) -> None:
    azure.cut_next(after_bytes=9600)
    async with http.post(
        f"{azure.url}/cognitiveservices/v1", data=SSML.encode(), headers=HEADERS
    ) as response:
        assert response.status == 200
        received = b""
        with pytest.raises(aiohttp.ClientPayloadError):
            async for data in response.content.iter_any():
                received += data
    assert 0 < len(received) <= 9600
    # The next request is whole again.
    status, _, body = await post(http, azure)
    assert status == 200 and body == azure.expected_pcm("Hello & goodbye", "en-US-JennyNeural")


async def test_any_key_when_none_is_required(http) -> None:
    async with FakeAzureTTS() as open_azure:
        status, _, _ = await post(http, open_azure, **{"Ocp-Apim-Subscription-Key": "whatever"})
    assert status == 200
