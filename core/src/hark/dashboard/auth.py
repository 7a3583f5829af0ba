"""The dashboard's login: one token, compared in constant time.

A request is let in with ``Authorization: Bearer TOKEN`` or the session cookie set
by logging in on ``/login``. The cookie holds an HMAC of the token, never the
token itself. Without either, an API route or ``/metrics`` answers 401 and a page
answers 401 with the login form.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web

COOKIE = "hark_dashboard"
# What anyone may fetch: the login form itself and the (secret-free) script and style.
PUBLIC = frozenset({"/login", "/static/dashboard.js", "/static/dashboard.css"})
# A wrong token waits this long before its answer (slows down guessing).
FAILED_LOGIN_DELAY = 0.5

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# (request, error message or None, where to go after logging in or None) -> the form.
LoginPage = Callable[..., str]


def generate_token() -> str:
    return secrets.token_urlsafe(24)


class TokenAuth:
    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("the dashboard needs a token")
        self._token = token.encode()
        self._session = hmac.new(self._token, b"hark-dashboard-session", hashlib.sha256).hexdigest()

    def token_ok(self, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(candidate.encode(), self._token)

    def session_ok(self, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(
            candidate.encode(), self._session.encode()
        )

    def authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, credential = header.partition(" ")
        if scheme.lower() == "bearer" and self.token_ok(credential.strip()):
            return True
        return self.session_ok(request.cookies.get(COOKIE))

    def log_in(self, response: web.StreamResponse, *, secure: bool) -> None:
        response.set_cookie(
            COOKIE, self._session, httponly=True, samesite="Strict", path="/", secure=secure
        )

    @staticmethod
    def log_out(response: web.StreamResponse) -> None:
        response.del_cookie(COOKIE, path="/")

    def middleware(self, login_page: LoginPage):
        @web.middleware
        async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.path in PUBLIC or self.authorized(request):
                return await handler(request)
            if request.path.startswith("/api/") or request.path == "/metrics":
                return web.json_response(
                    {"error": "unauthorized: log in or send Authorization: Bearer TOKEN"},
                    status=401,
                    headers={"WWW-Authenticate": 'Bearer realm="hark"'},
                )
            return web.Response(
                text=login_page(request, None), status=401, content_type="text/html"
            )

        return check

    async def handle_login(self, request: web.Request, login_page: LoginPage) -> web.StreamResponse:
        if request.method != "POST":
            return web.Response(text=login_page(request, None), content_type="text/html")
        form = await request.post()
        token = form.get("token")
        target = str(form.get("next") or "/")
        if not target.startswith("/") or target.startswith("//"):
            target = "/"  # never redirect off this site
        if not isinstance(token, str) or not self.token_ok(token.strip()):
            await asyncio.sleep(FAILED_LOGIN_DELAY)
            return web.Response(
                text=login_page(request, "That token is not right.", target),
                status=401,
                content_type="text/html",
            )
        response = web.Response(status=303, headers={"Location": target})
        self.log_in(response, secure=request.secure)
        return response
