"""hark.api.ErrorTranslator: aiohttp, httpx and openai raise different exceptions for
the same events; each client, pointed at a loopback server, must come out as the
same provider error, with the server's text scrubbed of secrets."""

from __future__ import annotations

import asyncio
import json
import socket

import aiohttp
import httpx
import openai
import pytest
from aiohttp import web

from hark import (
    BadOutputError,
    ConfigurationError,
    ProviderConnectionError,
    ProviderStatusError,
    ProviderTimeoutError,
)
from hark.api import ErrorTranslator, HttpFailure, body_message

KEY = "sk-loopback-secret-1234"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def service():
    """A loopback API: /status/<n> answers n with an OpenAI-style error body that
    echoes the key (as a careless server might); /slow never answers in time."""

    def answer(code: int) -> web.Response:
        body = {"error": {"message": f"bad key {KEY} given", "code": "oops"}}
        headers = {"Retry-After": "7"} if code == 429 else {}
        return web.json_response(body, status=code, headers=headers)

    async def status(request: web.Request) -> web.Response:
        return answer(int(request.match_info["code"]))

    async def completions(request: web.Request) -> web.Response:
        return answer(429)

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({})

    app = web.Application()
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_post("/v1/chat/completions", completions)
    app.router.add_get("/slow", slow)

    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


def translator(timeout: float = 0.3) -> ErrorTranslator:
    return ErrorTranslator(
        "the service", key_env="SERVICE_API_KEY", secrets=lambda: [KEY], timeout=timeout
    )


async def aiohttp_error(url: str, timeout: float = 2.0) -> BaseException:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http:
        try:
            async with http.get(url) as response:
                response.raise_for_status()
        except BaseException as exc:
            return exc
    raise AssertionError("no error")


async def httpx_error(url: str, timeout: float = 2.0) -> BaseException:
    async with httpx.AsyncClient(timeout=timeout) as http:
        try:
            (await http.get(url)).raise_for_status()
        except BaseException as exc:
            return exc
    raise AssertionError("no error")


async def openai_error(base: str, timeout: float = 2.0) -> BaseException:
    client = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0, timeout=timeout)
    try:
        await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    except BaseException as exc:
        return exc
    finally:
        await client.close()
    raise AssertionError("no error")


async def test_a_429_reads_the_same_from_every_client_with_its_retry_after(service):
    errors = [
        await aiohttp_error(f"{service}/status/429"),
        await httpx_error(f"{service}/status/429"),
        await openai_error(service),
    ]
    translated = [translator().translate(e) for e in errors]
    for error in translated:
        assert isinstance(error, ProviderStatusError), error
        assert error.status == 429 and error.retryable
    # aiohttp's ClientResponseError carries no body; the other two show the detail.
    assert translated[0].retry_after == 7.0
    assert translated[1].retry_after == 7.0 and translated[2].retry_after == 7.0
    for error in translated[1:]:
        assert "bad key *** given" in error.message
    for error in translated:
        assert KEY not in error.message and KEY not in error.user_message


async def test_401_names_the_variable_to_fix(service):
    for exc in (await httpx_error(f"{service}/status/401"),):
        error = translator().translate(exc)
        assert isinstance(error, ProviderStatusError) and error.status == 401
        assert "check SERVICE_API_KEY" in error.message and KEY not in error.message
    error = translator().translate(await httpx_error(f"{service}/status/403"), has_key=False)
    assert "the request without an API key" in error.message


async def test_a_plugin_reads_its_own_statuses_first(service):
    def model_missing(failure: HttpFailure):
        if failure.status == 404:
            return ConfigurationError(f"no such model ({failure.code})")
        return None

    exc = await httpx_error(f"{service}/status/404")
    error = translator().translate(exc, on_status=model_missing)
    assert isinstance(error, ConfigurationError) and error.message == "no such model (oops)"
    exc = await httpx_error(f"{service}/status/500")
    error = translator().translate(exc, on_status=model_missing)
    assert isinstance(error, ProviderStatusError) and error.retryable


async def test_refused_connections_and_timeouts(service):
    dead = f"http://127.0.0.1:{closed_port()}/"
    for exc in (
        await aiohttp_error(dead),
        await httpx_error(dead),
        await openai_error(dead.rstrip("/")),
    ):
        error = translator().translate(exc)
        assert isinstance(error, ProviderConnectionError), (exc, error)
        assert error.message == "could not connect to the service"
    for exc in (
        await aiohttp_error(f"{service}/slow", timeout=0.3),
        await httpx_error(f"{service}/slow", timeout=0.3),
    ):
        error = translator().translate(exc)
        assert isinstance(error, ProviderTimeoutError), (exc, error)
        assert error.message == "the service did not answer within 0.3s"
    # openai raises the same APIConnectionError when a stream it was reading breaks:
    # the plugin says the response had started.
    broken = translator().translate(await openai_error(dead.rstrip("/")), connected=True)
    assert isinstance(broken, ProviderConnectionError) and broken.retryable
    assert broken.message == "the connection to the service broke before the reply"
    # httpx2 (openai 3.x's transport) reads like httpx.
    httpx2 = pytest.importorskip("httpx2")

    async with httpx2.AsyncClient() as client:
        with pytest.raises(httpx2.ConnectError) as refused:
            await client.get(dead)
    assert translator().translate(refused.value).message == "could not connect to the service"
    # Once part of the answer reached the user, a broken stream is not retried.
    mid = translator().translate(TimeoutError(), produced="after 12 characters")
    assert isinstance(mid, BadOutputError) and not mid.retryable
    assert mid.message == "the connection to the service broke mid-reply, after 12 characters"


def test_errors_inside_a_stream_and_unknown_exceptions():
    t = translator()
    upstream = t.stream_error(
        {"code": 502, "message": f"upstream {KEY} died"}, "after 3 characters"
    )
    assert isinstance(upstream, ProviderStatusError) and upstream.status == 502
    assert upstream.message == "the model failed mid-stream after 3 characters: upstream *** died"
    other = t.stream_error({"code": "server_error", "message": "x"})
    assert isinstance(other, BadOutputError) and "(server_error)" in other.message
    assert isinstance(t.translate(json.JSONDecodeError("x", "", 0)), BadOutputError)
    bug = KeyError("a bug of the plugin's own")
    assert t.translate(bug) is bug  # the core reports it as an internal error


def test_body_shapes_and_scrubbing():
    assert body_message({"error": {"message": "m", "code": 42}}) == ("42", "m")
    assert body_message({"detail": [{"loc": ["body"], "msg": "bad"}]}) == ("", "bad")
    assert body_message({"detail": "plain"}) == ("", "plain")
    assert body_message('{"error": "text"}') == ("", "text")
    assert body_message(b"not json") == ("", "not json")
    assert body_message(None) == ("", "")
    long = translator().scrub("x " * 500 + KEY)
    assert len(long) == 200 and long.endswith("…") and KEY not in long
