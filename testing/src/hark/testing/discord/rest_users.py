"""Gateway discovery, users, DMs, the application, and guild endpoints."""

from __future__ import annotations

from aiohttp import web

from . import errors
from . import gateway as gw
from .payloads import (
    channel_payload,
    guild_payload,
    member_payload,
    role_payload,
    self_user_payload,
    user_payload,
)
from .permissions import MANAGE_ROLES, base_permissions, has
from .rest import Route, json_response, no_content, read_json, server_of, snowflake
from .state import GuildRecord


async def get_gateway(request: web.Request) -> web.StreamResponse:
    return json_response({"url": server_of(request).gateway_url})


async def get_gateway_bot(request: web.Request) -> web.StreamResponse:
    server = server_of(request)
    # Each session started (an accepted IDENTIFY) uses one of the day's 1000.
    started = len(server.identifies) - len(server.refused_identifies)
    return json_response(
        {
            "url": server.gateway_url,
            "shards": server.shard_count,
            "session_start_limit": {
                "total": 1000,
                "remaining": max(0, 1000 - started),
                "reset_after": 14400000,
                "max_concurrency": server.max_concurrency,
            },
        }
    )


async def get_me(request: web.Request) -> web.StreamResponse:
    return json_response(self_user_payload(server_of(request).bot_user))


async def get_user(request: web.Request) -> web.StreamResponse:
    server = server_of(request)
    user = server.state.users.get(snowflake(request, "user_id"))
    if user is None:
        raise errors.unknown_user()
    return json_response(user_payload(user))


async def get_my_guilds(request: web.Request) -> web.StreamResponse:
    server = server_of(request)
    return json_response(
        [
            {
                "id": str(g.id),
                "name": g.name,
                "icon": None,
                "banner": None,
                "owner": g.owner_id == server.bot_user.id,
                "permissions": str(base_permissions(g, g.members[server.bot_user.id])),
                "features": [],
            }
            for g in server.state.guilds.values()
        ]
    )


async def create_dm(request: web.Request) -> web.StreamResponse:
    server = server_of(request)
    body = await read_json(request)
    try:
        recipient_id = int(body.get("recipient_id"))
    except (TypeError, ValueError):
        raise errors.field_error(
            "recipient_id", "BASE_TYPE_REQUIRED", "This field is required"
        ) from None
    if recipient_id not in server.state.users:
        raise errors.unknown_user()
    return json_response(channel_payload(server.create_dm(recipient_id)))


async def get_application(request: web.Request) -> web.StreamResponse:
    return json_response(server_of(request).application_payload())


# -- guilds ----------------------------------------------------------------------


def _guild(request: web.Request) -> GuildRecord:
    guild = server_of(request).state.guilds.get(snowflake(request, "guild_id"))
    if guild is None:
        raise errors.unknown_guild()
    return guild


async def get_guild(request: web.Request) -> web.StreamResponse:
    return json_response(guild_payload(_guild(request)))


async def get_guild_channels(request: web.Request) -> web.StreamResponse:
    return json_response([channel_payload(c) for c in _guild(request).channels.values()])


async def get_guild_roles(request: web.Request) -> web.StreamResponse:
    return json_response([role_payload(r) for r in _guild(request).roles.values()])


async def get_member(request: web.Request) -> web.StreamResponse:
    member = _guild(request).member(snowflake(request, "user_id"))
    if member is None:
        raise errors.unknown_member()
    return json_response(member_payload(member))


async def list_members(request: web.Request) -> web.StreamResponse:
    server = server_of(request)
    guild = _guild(request)
    # Listing members needs the privileged GUILD_MEMBERS intent to be enabled.
    if not server.allowed_intents() & gw.GUILD_MEMBERS:
        raise errors.missing_access()
    limit = max(1, min(1000, int(request.query.get("limit", "1"))))
    after = int(request.query.get("after", "0"))
    members = sorted((m for m in guild.members.values() if m.id > after), key=lambda m: m.id)
    return json_response([member_payload(m) for m in members[:limit]])


async def search_members(request: web.Request) -> web.StreamResponse:
    guild = _guild(request)
    query = request.query.get("query", "").lower()
    limit = max(1, min(1000, int(request.query.get("limit", "1"))))
    found = [
        m
        for m in guild.members.values()
        if m.user.username.lower().startswith(query) or (m.nick or "").lower().startswith(query)
    ]
    return json_response([member_payload(m) for m in found[:limit]])


async def add_member_role(request: web.Request) -> web.StreamResponse:
    return await _change_member_role(request, add=True)


async def remove_member_role(request: web.Request) -> web.StreamResponse:
    return await _change_member_role(request, add=False)


async def _change_member_role(request: web.Request, *, add: bool) -> web.StreamResponse:
    server = server_of(request)
    guild = _guild(request)
    member = guild.member(snowflake(request, "user_id"))
    if member is None:
        raise errors.unknown_member()
    role_id = snowflake(request, "role_id")
    if role_id not in guild.roles or role_id == guild.id:
        raise errors.APIError(404, 10011, "Unknown Role")
    me = guild.members[server.bot_user.id]
    if not has(base_permissions(guild, me), MANAGE_ROLES):
        raise errors.missing_permissions()
    if add and role_id not in member.role_ids:
        member.role_ids.append(role_id)
    elif not add and role_id in member.role_ids:
        member.role_ids.remove(role_id)
    server._member_updated(guild, member)
    return no_content()


ROUTES: list[Route] = [
    ("GET", "/gateway", get_gateway),
    ("GET", "/gateway/bot", get_gateway_bot),
    ("GET", "/users/@me", get_me),
    ("GET", "/users/@me/guilds", get_my_guilds),
    ("POST", "/users/@me/channels", create_dm),
    ("GET", "/users/{user_id}", get_user),
    ("GET", "/oauth2/applications/@me", get_application),
    ("GET", "/applications/@me", get_application),
    ("GET", "/guilds/{guild_id}", get_guild),
    ("GET", "/guilds/{guild_id}/channels", get_guild_channels),
    ("GET", "/guilds/{guild_id}/roles", get_guild_roles),
    ("GET", "/guilds/{guild_id}/members", list_members),
    ("GET", "/guilds/{guild_id}/members/search", search_members),
    ("GET", "/guilds/{guild_id}/members/{user_id}", get_member),
    ("PUT", "/guilds/{guild_id}/members/{user_id}/roles/{role_id}", add_member_role),
    ("DELETE", "/guilds/{guild_id}/members/{user_id}/roles/{role_id}", remove_member_role),
]
