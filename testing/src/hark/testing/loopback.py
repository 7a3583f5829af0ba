"""Loopback HTTP servers for tests: the plumbing every fake service shares.

A plugin that talks to an HTTP service tests against a fake of it on 127.0.0.1
(its ``testing`` module). :class:`LoopbackServer` is the part all such fakes have
in common: an aiohttp server on ``host`` (127.0.0.1) and a random free port,
``start()`` / ``close()`` or ``async with``, and ``host``, ``port`` and ``url``
(which raise until the server is started). Handlers still running at ``close()``
(a scripted delay, a held stream) are cancelled after :attr:`~LoopbackServer.shutdown_timeout`
seconds. A subclass adds its routes in :meth:`~LoopbackServer.routes` (or builds
the whole application in :meth:`~LoopbackServer.make_app`)::

    class FakeWeather(LoopbackServer):
        server_name = "the fake weather server"  # in the "not started" error

        def __init__(self) -> None:
            super().__init__()
            self.failures = FailureQueue()  # fail_next() adds to it

        def routes(self, app: web.Application) -> None:
            app.router.add_get("/v1/forecast", self._forecast)

        async def _forecast(self, request: web.Request) -> web.Response:
            failure = self.failures.take("forecast")
            if failure is not None:
                return web.json_response({"error": "busy"}, status=failure.status,
                                         headers=failure.headers)
            return web.json_response({"sky": "clear"})

    async with FakeWeather() as server:
        client = WeatherClient(base_url=server.url)

:class:`FailureQueue` scripts errors: "answer the next N matching requests with
HTTP status S (and ``Retry-After: R``)", optionally after letting some through;
each fake turns a :class:`ScriptedFailure` into its service's error body.
:func:`unused_port` gives a loopback port where nothing listens (connections are
refused), for "the service is down" tests.
"""

from __future__ import annotations

import socket
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar

from aiohttp import web

__all__ = ["FailureQueue", "LoopbackServer", "ScriptedFailure", "unused_port"]

T = TypeVar("T")


def unused_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` with nothing listening on it (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class LoopbackServer:
    """An aiohttp server on ``host`` and a random port; subclass it and add routes.

    What a fake records is its own business (each service's requests look different);
    :meth:`_last` serves its ``last_*`` properties."""

    #: What the "not started" error calls the server.
    server_name = "the server"
    #: Seconds ``close()`` waits for running handlers before cancelling them.
    shutdown_timeout = 0.1

    def __init__(self, *, host: str = "127.0.0.1") -> None:
        self.host = host
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    def routes(self, app: web.Application) -> None:
        """Add the fake service's routes to ``app``."""

    def make_app(self) -> web.Application:
        """The application to serve: a plain one with :meth:`routes` added."""
        app = web.Application()
        self.routes(app)
        return app

    async def start(self) -> Self:
        """Listen on ``host`` and a free port; returns the server itself."""
        runner = web.AppRunner(
            self.make_app(),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=self.shutdown_timeout,
        )
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        self._runner = runner
        self._port = sock.getsockname()[1]
        await web.SockSite(runner, sock).start()
        return self

    async def close(self) -> None:
        """Stop serving (``url`` and ``port`` keep their values). Safe to call twice."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def started(self) -> bool:
        return self._runner is not None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"{self.server_name} is not started")
        return self._port

    @property
    def url(self) -> str:
        """``http://HOST:PORT``, the server's root."""
        return f"http://{self.host}:{self.port}"

    @staticmethod
    def _last(requests: Sequence[T], what: str) -> T:
        """The last of ``requests`` (recorded ones of a kind), for a fake's ``last_*``;
        an AssertionError saying no ``what`` was received when there is none."""
        if not requests:
            raise AssertionError(f"no {what} was received")
        return requests[-1]


@dataclass(slots=True)
class ScriptedFailure:
    """One scripted error: answer ``times`` more matching requests with ``status``."""

    status: int
    times: int = 1
    retry_after: float | str | None = None
    #: The error text; None: the fake's default for ``status``.
    message: str | None = None
    #: The request keys (paths, endpoint names...) it applies to; None: every request.
    keys: frozenset[Hashable] | None = None
    #: Matching requests still to let through before the first failure.
    skip: int = 0
    #: Anything else the fake puts in its error (e.g. an error ``code``).
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        """``Retry-After`` when one was scripted, else nothing."""
        return {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}


class FailureQueue:
    """Scripted HTTP failures, taken in the order they were added."""

    def __init__(self) -> None:
        self._pending: list[ScriptedFailure] = []

    def add(
        self,
        status: int,
        *,
        times: int = 1,
        keys: Iterable[Hashable] | None = None,
        retry_after: float | str | None = None,
        message: str | None = None,
        skip: int = 0,
        **details: Any,
    ) -> None:
        """Fail the next ``times`` requests whose key is in ``keys`` (None: any request)
        with ``status``, after letting ``skip`` of them through."""
        if times < 1:
            return
        self._pending.append(
            ScriptedFailure(
                status,
                times,
                retry_after,
                message,
                None if keys is None else frozenset(keys),
                skip,
                details,
            )
        )

    def take(self, key: Hashable = None) -> ScriptedFailure | None:
        """The failure to answer a request with ``key`` with, or None to serve it.

        Only the first failure that applies to ``key`` counts: while it still has
        requests to let through (``skip``), this request is served normally."""
        for failure in self._pending:
            if failure.keys is not None and key not in failure.keys:
                continue
            if failure.skip > 0:
                failure.skip -= 1
                return None
            failure.times -= 1
            if failure.times == 0:
                self._pending.remove(failure)
            return failure
        return None

    def clear(self) -> None:
        self._pending.clear()

    def __len__(self) -> int:
        return sum(f.times for f in self._pending)
