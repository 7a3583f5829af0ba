"""Channel, message, reaction and typing endpoints."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import unquote

from aiohttp import web

from . import errors
from .payloads import channel_payload, message_payload, user_payload
from .permissions import (
    MANAGE_MESSAGES,
    READ_MESSAGE_HISTORY,
    VIEW_CHANNEL,
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
from .state import ChannelRecord, MessageRecord

if TYPE_CHECKING:
    from .server import FakeDiscord

# What the bot gets for a channel that exists but that it cannot view. Discord
# answers 403/50001 (Missing Access) there; the project's tests expect the same
# answer as for an unknown channel, 404/10003.
hidden_channel_error = errors.unknown_channel


def _bot_perms(server: FakeDiscord, channel: ChannelRecord) -> int | None:
    """The bot's permissions in a guild channel, None for DMs."""
    guild = server.state.guild_of(channel)
    if guild is None:
        return None
    me = guild.member(server.bot_user.id)
    return 0 if me is None else channel_permissions(guild, channel, me)


def visible_channel(server: FakeDiscord, channel_id: int) -> ChannelRecord:
    channel = server.state.channels.get(channel_id)
    if channel is None:
        raise errors.unknown_channel()
    perms = _bot_perms(server, channel)
    if perms is not None and not has(perms, VIEW_CHANNEL):
        raise hidden_channel_error()
    return channel


def _message_in(server: FakeDiscord, channel: ChannelRecord, message_id: int) -> MessageRecord:
    message = server.state.messages.get(message_id)
    if message is None or message.channel_id != channel.id or message.deleted or message.ephemeral:
        raise errors.unknown_message()
    return message


async def get_channel(request: web.Request) -> web.StreamResponse:
    server = server_of(request)
    channel = visible_channel(server, snowflake(request, "channel_id"))
    return json_response(channel_payload(channel))


async def create_message(request: web.Request) -> web.StreamResponse:
    server = server_of(request)
    channel = visible_channel(server, snowflake(request, "channel_id"))
    body, files = await read_message_body(request)
    server._check_bot_can_send(
        channel, with_files=bool(files), reply=bool(body.get("message_reference"))
    )
    message = server._create_message(channel, server.bot_user, body, files)
    return json_response(message_payload(server.state, message))


async def list_messages(request: web.Request) -> web.StreamResponse:
    server = server_of(request)
    channel = visible_channel(server, snowflake(request, "channel_id"))
    perms = _bot_perms(server, channel)
    if perms is not None and not has(perms, READ_MESSAGE_HISTORY):
        return json_response([])
    try:
        limit = int(request.query.get("limit", "50"))
    except ValueError:
        raise errors.field_error("limit", "NUMBER_TYPE_COERCE", "Must be a number.") from None
    if not 1 <= limit <= 100:
        raise errors.field_error("limit", "NUMBER_TYPE_MAX", "int value should be <= 100 and >= 1.")
    messages = [
        m for m in server.state.iter_messages(channel.id) if not m.deleted and not m.ephemeral
    ]
    query = request.query
    if "around" in query:
        around = int(query["around"])
        index = next((i for i, m in enumerate(messages) if m.id >= around), len(messages))
        start = max(0, index - limit // 2)
        page = messages[start : start + limit]
    elif "before" in query:
        page = [m for m in messages if m.id < int(query["before"])][-limit:]
    elif "after" in query:
        page = [m for m in messages if m.id > int(query["after"])][:limit]
    else:
        page = messages[-limit:]
    # Discord always answers newest first.
    return json_response([message_payload(server.state, m) for m in reversed(page)])


async def get_message(request: web.Request) -> web.StreamResponse:
    server = server_of(request)
    channel = visible_channel(server, snowflake(request, "channel_id"))
    perms = _bot_perms(server, channel)
    if perms is not None and not has(perms, READ_MESSAGE_HISTORY):
        raise errors.missing_access()
    message = _message_in(server, channel, snowflake(request, "message_id"))
    return json_response(message_payload(server.state, message))


async def edit_message(request: web.Request) -> web.StreamResponse:
    server = server_of(request)
    channel = visible_channel(server, snowflake(request, "channel_id"))
    message = _message_in(server, channel, snowflake(request, "message_id"))
    body, files = await read_message_body(request)
    if message.author.id != server.bot_user.id:
        # Others' messages: only flags (suppress embeds), with MANAGE_MESSAGES.
        perms = _bot_perms(server, channel) or 0
        if set(body) - {"flags"} or files:
            raise errors.cannot_edit_others()
        if not has(perms, MANAGE_MESSAGES):
            raise errors.missing_permissions()
    server._edit_message(message, body, files)
    return json_response(message_payload(server.state, message))


async def delete_message(request: web.Request) -> web.StreamResponse:
    server = server_of(request)
    channel = visible_channel(server, snowflake(request, "channel_id"))
    message = _message_in(server, channel, snowflake(request, "message_id"))
    if message.author.id != server.bot_user.id:
        perms = _bot_perms(server, channel)
        if perms is None or not has(perms, MANAGE_MESSAGES):
            raise errors.missing_permissions()
    server._delete_message(message)
    return no_content()


async def bulk_delete(request: web.Request) -> web.StreamResponse:
    server = server_of(request)
    channel = visible_channel(server, snowflake(request, "channel_id"))
    perms = _bot_perms(server, channel)
    if perms is None or not has(perms, MANAGE_MESSAGES):
        raise errors.missing_permissions()
    body = await read_json(request)
    ids = [int(x) for x in body.get("messages") or []]
    if not 2 <= len(ids) <= 100:
        raise errors.field_error("messages", "BASE_TYPE_BAD_LENGTH", "Must be between 2 and 100.")
    for message_id in ids:
        server._delete_message(_message_in(server, channel, message_id))
    return no_content()


async def trigger_typing(request: web.Request) -> web.StreamResponse:
    server = server_of(request)
    channel = visible_channel(server, snowflake(request, "channel_id"))
    server._record_typing(channel)
    return no_content()


def _emoji(request: web.Request) -> str:
    """The emoji key: a unicode emoji or ``name:id`` for a custom one.

    discord.py percent-encodes it (unquote is a no-op if aiohttp already decoded)
    and sends custom emojis as ``:name:id`` or ``a:name:id``, which Discord accepts.
    """
    emoji = unquote(request.match_info["emoji"]).strip("<>")
    if emoji.startswith("a:"):
        emoji = emoji[2:]
    return emoji.lstrip(":")


async def add_own_reaction(request: web.Request) -> web.StreamResponse:
    server = server_of(request)
    channel = visible_channel(server, snowflake(request, "channel_id"))
    message = _message_in(server, channel, snowflake(request, "message_id"))
    server._react(message, server.bot_user, _emoji(request))
    return no_content()


async def remove_own_reaction(request: web.Request) -> web.StreamResponse:
    server = server_of(request)
    channel = visible_channel(server, snowflake(request, "channel_id"))
    message = _message_in(server, channel, snowflake(request, "message_id"))
    server._unreact(message, server.bot_user.id, _emoji(request))
    return no_content()


async def remove_user_reaction(request: web.Request) -> web.StreamResponse:
    server = server_of(request)
    channel = visible_channel(server, snowflake(request, "channel_id"))
    message = _message_in(server, channel, snowflake(request, "message_id"))
    perms = _bot_perms(server, channel)
    if perms is None or not has(perms, MANAGE_MESSAGES):
        raise errors.missing_permissions()
    server._unreact(message, snowflake(request, "user_id"), _emoji(request))
    return no_content()


async def list_reaction_users(request: web.Request) -> web.StreamResponse:
    server = server_of(request)
    channel = visible_channel(server, snowflake(request, "channel_id"))
    message = _message_in(server, channel, snowflake(request, "message_id"))
    user_ids = message.reactions.get(_emoji(request), [])
    users = [server.state.users[uid] for uid in user_ids if uid in server.state.users]
    return json_response([user_payload(user) for user in users])


ROUTES: list[Route] = [
    ("GET", "/channels/{channel_id}", get_channel),
    ("POST", "/channels/{channel_id}/messages", create_message),
    ("GET", "/channels/{channel_id}/messages", list_messages),
    ("POST", "/channels/{channel_id}/messages/bulk-delete", bulk_delete),
    ("GET", "/channels/{channel_id}/messages/{message_id}", get_message),
    ("PATCH", "/channels/{channel_id}/messages/{message_id}", edit_message),
    ("DELETE", "/channels/{channel_id}/messages/{message_id}", delete_message),
    ("POST", "/channels/{channel_id}/typing", trigger_typing),
    ("PUT", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me", add_own_reaction),
    (
        "DELETE",
        "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
        remove_own_reaction,
    ),
    (
        "DELETE",
        "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/{user_id}",
        remove_user_reaction,
    ),
    ("GET", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}", list_reaction_users),
]
