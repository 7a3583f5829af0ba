"""The dashboard's aiohttp server, run inside ``bot run``'s process and event loop.

Read-only: pages (Overview, Plugins, Voice, Turns, Events), the same data as JSON
under ``/api/``, live updates over server-sent events (``/api/stream``) and
Prometheus metrics (``/metrics``). Every route but the login form needs the token
(:mod:`hark.dashboard.auth`). Every body is passed through
:func:`hark.logs.redact` on its way out, so a configured secret never leaves.

Idle cost: one timer a second (the event-loop lag probe); the live stream wakes
only for what is recorded, plus a tick every few seconds while a page is open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from importlib import resources
from typing import Any

from aiohttp import web

from hark.config import parse_bind
from hark.dashboard import data, pages
from hark.dashboard.auth import TokenAuth, generate_token
from hark.dashboard.metrics import CONTENT_TYPE, build_registry, exposition
from hark.logs import redact, register_secret

log = logging.getLogger(__name__)

LAG_INTERVAL = 1.0  # seconds between event-loop lag probes
LAG_WINDOW = 60  # probes the worst lag is taken over
TICK = 5.0  # seconds between the live stream's ticks (while a page is open)

_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # No inline script; the waterfall's bars are sized with style attributes.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self'; frame-ancestors 'none'; form-action 'self'"
    ),
}


class LagMonitor:
    """How late the event loop runs a timer: the latest and the worst of the last minute."""

    def __init__(self, interval: float = LAG_INTERVAL) -> None:
        self.interval = interval
        self.samples: deque[float] = deque(maxlen=LAG_WINDOW)
        self._task: asyncio.Task[None] | None = None

    @property
    def current(self) -> float | None:
        return round(self.samples[-1], 4) if self.samples else None

    @property
    def worst(self) -> float | None:
        return round(max(self.samples), 4) if self.samples else None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="hark-dashboard-lag")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.interval)
            self.samples.append(max(0.0, loop.time() - before - self.interval))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def _static(name: str) -> bytes:
    return resources.files("hark.dashboard").joinpath("static", name).read_bytes()


class Dashboard:
    """Serve the dashboard for ``bot`` (a HarkBot) on ``bind`` (``host:port``; port 0
    picks a free one, see :attr:`url`)."""

    def __init__(
        self,
        bot: Any,
        *,
        bind: str,
        token: str | None = None,
        announce: Callable[[str], None] | None = None,
    ) -> None:
        self.bot = bot
        self.host, self.port = parse_bind(bind)
        self.generated = not token
        self._token = token or generate_token()
        # Whatever happens next, no log line, page or metric can show the token (nor the
        # bot's own; `bot run` registered the environment's secrets already).
        register_secret(self._token)
        config = getattr(bot, "config", None)
        if config is not None:
            register_secret(config.token.get())
        self.auth = TokenAuth(self._token)
        self.announce = announce or (lambda line: print(line, flush=True))
        self.started_at = time.time()
        self.lag = LagMonitor()
        self.registry = build_registry(bot, self)
        self._runner: web.AppRunner | None = None
        self._streams: set[asyncio.Task[Any]] = set()
        self._static = {
            "/static/dashboard.js": (_static("dashboard.js"), "text/javascript"),
            "/static/dashboard.css": (_static("dashboard.css"), "text/css"),
        }

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    # -- lifecycle -------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self.auth.middleware(self._login_page)])
        app.on_response_prepare.append(self._secure_headers)
        routes = [
            web.get("/", self._page(data.overview, pages.overview, "/", "Overview", True)),
            web.get("/plugins", self._page(data.plugins, pages.plugins, "/plugins", "Plugins")),
            web.get("/voice", self._page(data.voice, pages.voice, "/voice", "Voice")),
            web.get("/turns", self._page(data.turns, pages.turns, "/turns", "Turns")),
            web.get("/events", self._page(data.events, pages.events, "/events", "Events")),
            web.get("/api/overview", self._api(lambda: data.overview(self.bot, self))),
            web.get("/api/plugins", self._api(lambda: data.plugins(self.bot))),
            web.get("/api/voice", self._api(lambda: data.voice(self.bot))),
            web.get("/api/turns", self._api(lambda: data.turns(self.bot))),
            web.get("/api/events", self._api(lambda: data.events(self.bot))),
            web.get("/api/stream", self._stream),
            web.get("/metrics", self._metrics),
            web.get("/login", self._login),
            web.post("/login", self._login),
            web.get("/logout", self._logout),
            *(web.get(path, self._serve_static) for path in self._static),
        ]
        app.add_routes(routes)
        return app

    async def start(self) -> None:
        runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        self.started_at = time.time()
        self.lag.start()
        log.info("dashboard serving on %s", self.url)
        if self.generated:
            # Printed once, to stdout only: never logged (and redacted from logs from now on).
            self.announce(f"Hark dashboard: {self.url}  login token: {self._token}")
        else:
            self.announce(f"Hark dashboard: {self.url}  (login with HARK_DASHBOARD_TOKEN)")

    async def stop(self) -> None:
        await self.lag.stop()
        for task in list(self._streams):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- responses ---------------------------------------------------------------------

    @staticmethod
    async def _secure_headers(request: web.Request, response: web.StreamResponse) -> None:
        for name, value in _HEADERS.items():
            response.headers.setdefault(name, value)

    @staticmethod
    def _json(payload: Any, status: int = 200) -> web.Response:
        return web.Response(
            text=redact(json.dumps(payload, default=str)),
            status=status,
            content_type="application/json",
        )

    @staticmethod
    def _html(text: str, status: int = 200) -> web.Response:
        return web.Response(text=redact(text), status=status, content_type="text/html")

    def _page(self, collect, render, path: str, title: str, with_self: bool = False):
        async def handler(request: web.Request) -> web.Response:
            payload = collect(self.bot, self) if with_self else collect(self.bot)
            main = render(payload)
            if request.query.get("fragment"):
                return self._html(main)
            return self._html(pages.layout(path, title, main))

        return handler

    def _api(self, collect):
        async def handler(request: web.Request) -> web.Response:
            return self._json(collect())

        return handler

    async def _metrics(self, request: web.Request) -> web.Response:
        body = redact(exposition(self.registry).decode())
        return web.Response(body=body.encode(), headers={"Content-Type": CONTENT_TYPE})

    async def _serve_static(self, request: web.Request) -> web.Response:
        body, kind = self._static[request.path]
        return web.Response(body=body, content_type=kind)

    def _login_page(
        self, request: web.Request, error: str | None, next_path: str | None = None
    ) -> str:
        wanted = next_path or (request.path_qs if request.path != "/login" else "/")
        return redact(pages.login(str(wanted), error))

    async def _login(self, request: web.Request) -> web.StreamResponse:
        return await self.auth.handle_login(request, self._login_page)

    async def _logout(self, request: web.Request) -> web.StreamResponse:
        response = web.Response(status=303, headers={"Location": "/login"})
        self.auth.log_out(response)
        return response

    # -- live updates ----------------------------------------------------------------

    def _live_payload(self, kind: str, item: Any) -> dict[str, Any]:
        if kind == "turn":
            return data.turn_data(self.bot, item)
        return item.as_dict()

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        task = asyncio.current_task()
        if task is not None:
            self._streams.add(task)
        try:
            with self.bot.metrics.subscribe() as updates:
                await response.write(b"retry: 3000\n\n")
                while True:
                    try:
                        kind, item = await asyncio.wait_for(updates.get(), TICK)
                        payload = self._live_payload(kind, item)
                    except TimeoutError:
                        kind, payload = "tick", {"uptime_s": round(time.time() - self.started_at)}
                    line = redact(json.dumps(payload, default=str))
                    await response.write(f"event: {kind}\ndata: {line}\n\n".encode())
        except ConnectionResetError:
            pass  # the page was closed
        finally:
            if task is not None:
                self._streams.discard(task)
        return response
