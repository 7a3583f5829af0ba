"""hark.testing.loopback: the base of the plugins' loopback fake servers."""

from __future__ import annotations

import socket

import aiohttp
import pytest
from aiohttp import web

from hark.testing.loopback import FailureQueue, LoopbackServer, unused_port


class Echo(LoopbackServer):
    server_name = "the echo server"

    def __init__(self) -> None:
        super().__init__()
        self.failures = FailureQueue()

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/{word}", self._echo)

    async def _echo(self, request: web.Request) -> web.Response:
        word = request.match_info["word"]
        failure = self.failures.take(word)
        if failure is not None:
            return web.Response(
                status=failure.status, text=failure.message or "", headers=failure.headers
            )
        return web.Response(text=word)


async def test_serves_on_loopback_until_closed() -> None:
    server = Echo()
    assert not server.started
    with pytest.raises(RuntimeError, match="the echo server is not started"):
        server.url  # noqa: B018
    async with server, aiohttp.ClientSession() as http:
        assert server.started and server.url == f"http://127.0.0.1:{server.port}"
        async with http.get(f"{server.url}/hello") as response:
            assert await response.text() == "hello"
    assert not server.started
    assert server.url.endswith(f":{server.port}")  # still known after close
    await server.close()  # twice is fine
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as http, http.get(f"{server.url}/hello"):
            pass


async def test_scripted_failures_reach_the_client() -> None:
    async with Echo() as server, aiohttp.ClientSession() as http:
        server.failures.add(429, keys=["busy"], retry_after=2, message="slow down")
        async with http.get(f"{server.url}/busy") as response:
            assert response.status == 429 and response.headers["Retry-After"] == "2"
            assert await response.text() == "slow down"
        async with http.get(f"{server.url}/busy") as response:
            assert response.status == 200


def test_last_of_a_kind_or_a_clear_assertion() -> None:
    assert LoopbackServer._last([1, 2], "number") == 2
    with pytest.raises(AssertionError, match="no chat request was received"):
        LoopbackServer._last([], "chat request")


def test_failure_queue_keys_times_and_skip() -> None:
    queue = FailureQueue()
    queue.add(503, times=2, keys=["chat"])
    queue.add(500, keys=None)  # any request
    assert len(queue) == 3
    assert queue.take("models").status == 500  # the first that applies
    assert [queue.take("chat").status, queue.take("chat").status] == [503, 503]
    assert queue.take("chat") is None and len(queue) == 0

    queue.add(401, times=1, skip=2, keys=["tts"], code="quota")
    assert queue.take("voices") is None
    assert queue.take("tts") is None and queue.take("tts") is None  # let through
    failure = queue.take("tts")
    assert failure.status == 401 and failure.details == {"code": "quota"}
    assert failure.headers == {}
    assert queue.take("tts") is None

    queue.add(500, times=0)  # nothing to fail
    queue.add(429, times=3, retry_after="1.5")
    assert queue.take().headers == {"Retry-After": "1.5"}
    queue.clear()
    assert queue.take() is None


def test_unused_port_refuses_connections() -> None:
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", unused_port()), timeout=2),
    ):
        pass
