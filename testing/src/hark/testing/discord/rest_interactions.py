"""Application commands, interaction callbacks and interaction webhooks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from . import errors
from .payloads import command_payload, message_payload
from .rest import (
    Route,
    json_response,
    no_content,
    query_flag,
    read_json,
    read_message_body,
    server_of,
    snowflake,
)
from .state import MessageRecord

if TYPE_CHECKING:
    from .server import FakeDiscord


def _scope(request: web.Request) -> int | None:
    """The command scope of a route: a guild id, or None for global commands."""
    server = server_of(request)
    if snowflake(request, "application_id") != server.application_id:
        raise errors.missing_access()
    return snowflake(request, "guild_id") if "guild_id" in request.match_info else None


# -- application commands ----------------------------------------------------------


async def list_commands(request: web.Request) -> web.StreamResponse:
    server = server_of(request)
    guild_id = _scope(request)
    return json_response([command_payload(c) for c in server._scope(guild_id).values()])


async def overwrite_commands(request: web.Request) -> web.StreamResponse:
    server = server_of(request)
    guild_id = _scope(request)
    commands = server._overwrite_commands(guild_id, await read_json(request))
    return json_response([command_payload(c) for c in commands])


async def upsert_command(request: web.Request) -> web.StreamResponse:
    server = server_of(request)
    guild_id = _scope(request)
    command, created = server._upsert_command(guild_id, await read_json(request))
    return json_response(command_payload(command), 201 if created else 200)


async def get_command(request: web.Request) -> web.StreamResponse:
    server = server_of(request)
    guild_id = _scope(request)
    return json_response(
        command_payload(server._find_scoped(guild_id, snowflake(request, "command_id")))
    )


async def edit_command(request: web.Request) -> web.StreamResponse:
    server = server_of(request)
    guild_id = _scope(request)
    changes = await read_json(request)
    command = server._edit_command(guild_id, snowflake(request, "command_id"), changes)
    return json_response(command_payload(command))


async def delete_command(request: web.Request) -> web.StreamResponse:
    server = server_of(request)
    server._delete_command(_scope(request), snowflake(request, "command_id"))
    return no_content()


# -- interaction responses ----------------------------------------------------------


async def interaction_callback(request: web.Request) -> web.StreamResponse:
    server = server_of(request)
    record = server._interaction_for_callback(
        snowflake(request, "interaction_id"), request.match_info["token"]
    )
    body, files = await read_message_body(request)
    response = server._interaction_callback(record, body, files)
    # discord.py 2.5+ always asks for the InteractionCallbackResponse body.
    if query_flag(request, "with_response"):
        return json_response(response)
    return no_content()


async def create_followup(request: web.Request) -> web.StreamResponse:
    server = server_of(request)
    record = server._interaction_for_webhook(
        snowflake(request, "application_id"), request.match_info["token"]
    )
    body, files = await read_message_body(request)
    message = server._interaction_followup(record, body, files)
    if query_flag(request, "wait"):
        return json_response(message_payload(server.state, message))
    return no_content()


def _owned_message(request: web.Request) -> tuple[FakeDiscord, MessageRecord]:
    """The interaction-owned message a webhook route points at (``@original`` or an id)."""
    server = server_of(request)
    record = server._interaction_for_webhook(
        snowflake(request, "application_id"), request.match_info["token"]
    )
    message = server._interaction_owned_message(record, request.match_info["message_id"])
    return server, message


async def get_webhook_message(request: web.Request) -> web.StreamResponse:
    server, message = _owned_message(request)
    return json_response(message_payload(server.state, message))


async def edit_webhook_message(request: web.Request) -> web.StreamResponse:
    server, message = _owned_message(request)
    body, files = await read_message_body(request)
    server._edit_message(message, body, files)
    return json_response(message_payload(server.state, message))


async def delete_webhook_message(request: web.Request) -> web.StreamResponse:
    server, message = _owned_message(request)
    server._delete_message(message)
    return no_content()


_APP = "/applications/{application_id}"
_GUILD_APP = "/applications/{application_id}/guilds/{guild_id}"
_WEBHOOK_MESSAGE = "/webhooks/{application_id}/{token}/messages/{message_id}"

ROUTES: list[Route] = [
    *(
        route
        for base in (_APP, _GUILD_APP)
        for route in (
            ("GET", f"{base}/commands", list_commands),
            ("PUT", f"{base}/commands", overwrite_commands),
            ("POST", f"{base}/commands", upsert_command),
            ("GET", f"{base}/commands/{{command_id}}", get_command),
            ("PATCH", f"{base}/commands/{{command_id}}", edit_command),
            ("DELETE", f"{base}/commands/{{command_id}}", delete_command),
        )
    ),
    ("POST", "/interactions/{interaction_id}/{token}/callback", interaction_callback),
    ("POST", "/webhooks/{application_id}/{token}", create_followup),
    ("GET", _WEBHOOK_MESSAGE, get_webhook_message),
    ("PATCH", _WEBHOOK_MESSAGE, edit_webhook_message),
    ("DELETE", _WEBHOOK_MESSAGE, delete_webhook_message),
]
