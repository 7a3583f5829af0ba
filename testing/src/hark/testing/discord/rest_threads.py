"""Thread endpoints: start one (from a message, on its own, a forum post), join, leave,
list the active ones."""

from __future__ import annotations

from aiohttp import web

from . import errors
from .payloads import message_payload, thread_payload
from .permissions import (
    CREATE_PRIVATE_THREADS,
    CREATE_PUBLIC_THREADS,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    channel_permissions,
    has,
)
from .rest import (
    Route,
    json_response,
    no_content,
    read_json,
    read_message_body,
    server_of,
    snowflake,
)
from .rest_channels import _bot_perms, _message_in, visible_channel
from .state import PRIVATE_THREAD


async def start_thread_from_message(request: web.Request) -> web.StreamResponse:
    server = server_of(request)
    channel = visible_channel(server, snowflake(request, "channel_id"))
    message = _message_in(server, channel, snowflake(request, "message_id"))
    perms = _bot_perms(server, channel)
    if perms is None:
        raise errors.APIError(400, 50003, "Cannot execute action on a DM channel")
    if not has(perms, CREATE_PUBLIC_THREADS | READ_MESSAGE_HISTORY):
        raise errors.missing_permissions()
    body = await read_json(request)
    thread = server._start_thread(channel, server.bot_user, body, message=message)
    return json_response(thread_payload(thread, member_id=server.bot_user.id))


async def start_thread(request: web.Request) -> web.StreamResponse:
    """Without a message (``type`` 11 or 12), or a forum post (with ``message``)."""
    server = server_of(request)
    channel = visible_channel(server, snowflake(request, "channel_id"))
    perms = _bot_perms(server, channel)
    if perms is None:
        raise errors.APIError(400, 50003, "Cannot execute action on a DM channel")
    if channel.is_forum:
        body, files = await read_message_body(request)
        if not has(perms, SEND_MESSAGES):
            raise errors.missing_permissions()
        thread, message = server._create_forum_post(channel, server.bot_user, body, files)
        data = thread_payload(thread, member_id=server.bot_user.id)
        data["message"] = message_payload(server.state, message)
        return json_response(data)
    body = await read_json(request)
    private = int(body.get("type") or PRIVATE_THREAD) == PRIVATE_THREAD
    if not has(perms, CREATE_PRIVATE_THREADS if private else CREATE_PUBLIC_THREADS):
        raise errors.missing_permissions()
    thread = server._start_thread(channel, server.bot_user, body)
    return json_response(thread_payload(thread, member_id=server.bot_user.id))


async def join_thread(request: web.Request) -> web.StreamResponse:
    server = server_of(request)
    thread = visible_channel(server, snowflake(request, "channel_id"))
    if not thread.is_thread:
        raise errors.APIError(400, 50024, "Cannot execute action on this channel type")
    server._join_thread(thread, server.bot_user, join=request.method == "PUT")
    return no_content()


async def active_threads(request: web.Request) -> web.StreamResponse:
    server = server_of(request)
    guild = server.state.guilds.get(snowflake(request, "guild_id"))
    if guild is None or guild.member(server.bot_user.id) is None:
        raise errors.unknown_guild()
    me = guild.member(server.bot_user.id)
    visible = [
        t
        for t in guild.threads.values()
        if not t.archived and me is not None and channel_permissions(guild, t, me)
    ]
    members = [
        {
            "id": str(t.id),
            "user_id": str(server.bot_user.id),
            "join_timestamp": t.created_at,
            "flags": 0,
        }
        for t in visible
        if server.bot_user.id in t.member_ids
    ]
    return json_response({"threads": [thread_payload(t) for t in visible], "members": members})


ROUTES: list[Route] = [
    ("POST", "/channels/{channel_id}/messages/{message_id}/threads", start_thread_from_message),
    ("POST", "/channels/{channel_id}/threads", start_thread),
    ("PUT", "/channels/{channel_id}/thread-members/@me", join_thread),
    ("DELETE", "/channels/{channel_id}/thread-members/@me", join_thread),
    ("GET", "/guilds/{guild_id}/threads/active", active_threads),
]
