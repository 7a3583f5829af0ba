"""The aiohttp application: REST API v10 under ``/api/v10``, the gateway, attachments.

The middleware does what Discord's edge does for every request: authentication,
rate-limit headers, JSON errors for unknown routes, fault injection, and a log
of every request in ``server.requests``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from aiohttp import BodyPartReader, web

from . import errors
from .base import RequestLog
from .messages import UploadedFile

if TYPE_CHECKING:
    from .server import FakeDiscord

log = logging.getLogger(__name__)

API_PREFIX = "/api/v10"
# Routes that Discord serves without the bot token: they carry their own token.
_NO_AUTH = re.compile(r"^/(gateway|webhooks/.*|interactions/.*)$")

SERVER_KEY: web.AppKey[Any] = web.AppKey("fake_discord")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Route = tuple[str, str, Handler]


def server_of(request: web.Request) -> FakeDiscord:
    return cast("FakeDiscord", request.app[SERVER_KEY])


# -- responses and request parsing -------------------------------------------


def json_response(data: Any, status: int = 200) -> web.Response:
    # discord.py only parses a body as JSON when the Content-Type header is exactly
    # "application/json" (no charset), so aiohttp's json_response cannot be used.
    return web.Response(
        body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"}
    )


def no_content() -> web.Response:
    return web.Response(status=204)


def snowflake(request: web.Request, name: str) -> int:
    raw = request.match_info[name]
    if not raw.isdigit():
        raise errors.field_error(name, "NUMBER_TYPE_COERCE", f'Value "{raw}" is not snowflake.')
    return int(raw)


def query_flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("1", "true", "yes")


async def read_json(request: web.Request) -> Any:
    if not request.can_read_body:
        return {}
    try:
        return await request.json(loads=json.loads)
    except ValueError:
        raise errors.APIError(400, 50109, "The request body contains invalid JSON.") from None


async def read_message_body(request: web.Request) -> tuple[dict[str, Any], list[UploadedFile]]:
    """A message body: plain JSON, or multipart with ``payload_json`` + ``files[n]``."""
    if not request.content_type.startswith("multipart/"):
        body = await read_json(request)
        if not isinstance(body, dict):
            raise errors.field_error("_", "MODEL_TYPE_CONVERT", "Must be an object.")
        return body, []
    reader = await request.multipart()
    payload: dict[str, Any] = {}
    files: list[UploadedFile] = []
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue  # nested multipart: Discord does not accept it either
        name = part.name or ""
        if name == "payload_json":
            try:
                payload = json.loads(await part.text())
            except ValueError:
                raise errors.APIError(
                    400, 50109, "The request body contains invalid JSON."
                ) from None
        elif match := re.fullmatch(r"files\[(\d+)\]|file(\d*)", name):
            index = int(match.group(1) or match.group(2) or 0)
            data = bytes(await part.read(decode=False))
            content_type = part.headers.get("Content-Type")
            files.append(UploadedFile(part.filename or f"file{index}", data, content_type, index))
    return payload, files


# -- fault injection -----------------------------------------------------------


@dataclass
class FaultRule:
    method: str
    pattern: re.Pattern[str]
    status: int
    retry_after: float | None
    remaining: int
    body: dict[str, Any] | None = None

    def matches(self, method: str, path: str) -> bool:
        return (
            self.remaining > 0 and self.method in (method, "*") and bool(self.pattern.search(path))
        )

    def response(self) -> web.Response:
        if self.status == 429:
            retry_after = 1.0 if self.retry_after is None else self.retry_after
            body = self.body or {
                "message": "You are being rate limited.",
                "retry_after": retry_after,
                "global": False,
                "code": 0,
            }
            response = json_response(body, 429)
            # discord.py treats a 429 without "Via" as a Cloudflare ban and gives up.
            response.headers.update(
                {
                    "Retry-After": str(math.ceil(retry_after)),
                    "Via": "1.1 google",
                    "X-RateLimit-Scope": "user",
                    "X-RateLimit-Limit": "5",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset-After": f"{retry_after:.3f}",
                    "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
                }
            )
            return response
        body = self.body or {"message": f"{self.status}: Injected failure", "code": 0}
        return json_response(body, self.status)


@dataclass
class DelayRule:
    """Hold the next ``remaining`` matching REST calls for ``seconds`` before answering."""

    method: str
    pattern: re.Pattern[str]
    seconds: float
    remaining: int

    def matches(self, method: str, path: str) -> bool:
        return (
            self.remaining > 0 and self.method in (method, "*") and bool(self.pattern.search(path))
        )


# -- middleware ------------------------------------------------------------------


def _ratelimit_headers(request: web.Request) -> dict[str, str]:
    route = request.match_info.route
    template = route.resource.canonical if route.resource is not None else request.path
    bucket = hashlib.sha1(f"{request.method} {template}".encode()).hexdigest()[:16]
    # Generous limits: discord.py never has to wait, but its bucket logic is exercised.
    return {
        "X-RateLimit-Limit": "50",
        "X-RateLimit-Remaining": "49",
        "X-RateLimit-Reset": f"{time.time() + 1:.3f}",
        "X-RateLimit-Reset-After": "1.000",
        "X-RateLimit-Bucket": bucket,
    }


@web.middleware
async def discord_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    server = server_of(request)
    path = request.path
    if not path.startswith(API_PREFIX + "/"):
        return await _plain(server, request, handler)
    api_path = path[len(API_PREFIX) :]
    delay = server._take_delay(request.method, api_path)
    if delay:
        await asyncio.sleep(delay)
    fault = server._take_fault(request.method, api_path)
    if fault is not None:
        response: web.StreamResponse = fault.response()
    else:
        try:
            if not _NO_AUTH.match(api_path) and not server.check_token(
                _bot_token(request.headers.get("Authorization"))
            ):
                raise errors.unauthorized()
            response = await handler(request)
        except errors.APIError as exc:
            response = json_response(exc.body(), exc.status)
        except web.HTTPException as exc:
            response = _routing_error(server, request, exc)
        except Exception as exc:
            response = _internal_error(server, request, exc)
        if response.status != 429:
            response.headers.update(_ratelimit_headers(request))
    server.requests.append(RequestLog(request.method, path, response.status))
    server._changed()
    return response


async def _plain(server: FakeDiscord, request: web.Request, handler: Handler) -> web.StreamResponse:
    """Non-API paths: the gateway WebSocket and attachment downloads."""
    if request.path != "/gateway":
        server.cdn_requests.append(request.path)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if request.path == "/gateway":
            raise
        return _routing_error(server, request, exc)


def _bot_token(header: str | None) -> str | None:
    if header and header.startswith("Bot "):
        return header[4:]
    return None


def _routing_error(
    server: FakeDiscord, request: web.Request, exc: web.HTTPException
) -> web.Response:
    if exc.status == 405:
        return json_response({"message": "405: Method Not Allowed", "code": 0}, 405)
    if exc.status == 404:
        # An endpoint the fake does not implement (or a typo): make it easy to spot.
        server.unhandled_routes.append(f"{request.method} {request.path}")
        return json_response({"message": "404: Not Found", "code": 0}, 404)
    return json_response({"message": exc.reason, "code": 0}, exc.status)


def _internal_error(server: FakeDiscord, request: web.Request, exc: Exception) -> web.Response:
    # A bug in the fake itself. Answer 400 rather than 500: discord.py retries 5xx
    # for ~25 s, which would only hide the problem; tests can assert on
    # server.internal_errors.
    log.exception("fake Discord failed on %s %s", request.method, request.path)
    server.internal_errors.append(f"{request.method} {request.path}: {exc!r}")
    return json_response({"message": f"Fake Discord internal error: {exc!r}", "code": 0}, 400)


# -- application ----------------------------------------------------------------------


async def _attachment(request: web.Request) -> web.StreamResponse:
    server = server_of(request)
    record = server._attachments.get(snowflake(request, "attachment_id"))
    if record is None or record.filename != request.match_info["filename"]:
        return web.Response(status=404, text="Not Found")
    # As a header: aiohttp refuses a charset inside its content_type argument.
    return web.Response(
        body=record.data,
        headers={"Content-Type": record.content_type or "application/octet-stream"},
    )


async def _external(request: web.Request) -> web.StreamResponse:
    server = server_of(request)
    page = server.proxied(request.match_info["key"])
    if page is None or page.data is None:
        return web.Response(status=404, text="Not Found")
    return web.Response(body=page.data, headers={"Content-Type": page.content_type})


def build_app(server: FakeDiscord, routes: list[Route]) -> web.Application:
    app = web.Application(middlewares=[discord_middleware], client_max_size=64 * 1024 * 1024)
    app[SERVER_KEY] = server
    for method, path, handler in routes:
        app.router.add_route(method, API_PREFIX + path, handler)
    app.router.add_get("/gateway", server.gateway.handle)
    app.router.add_get("/attachments/{attachment_id}/{filename}", _attachment)
    app.router.add_get("/media/attachments/{attachment_id}/{filename}", _attachment)
    # The media proxy's copies of linked images (see web.py).
    app.router.add_get("/external/{key}/{filename}", _external)
    return app
