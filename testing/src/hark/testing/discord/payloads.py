"""Turn state records into the JSON shapes Discord sends (API v10).

Field names and presence follow discord.py's ``discord/types`` TypedDicts; keys
that discord.py reads with ``data[...]`` (rather than ``.get``) are always set.
"""

from __future__ import annotations

from typing import Any

from .permissions import ALL_PERMISSIONS, channel_permissions
from .snowflakes import iso_timestamp
from .state import (
    GUILD_VOICE,
    AppCommandRecord,
    AttachmentRecord,
    ChannelRecord,
    FakeState,
    GuildRecord,
    MemberRecord,
    MessageRecord,
    RoleRecord,
    UserRecord,
)

JSON = dict[str, Any]


def user_payload(user: UserRecord) -> JSON:
    data: JSON = {
        "id": str(user.id),
        "username": user.username,
        "discriminator": "0",
        "global_name": user.global_name,
        "avatar": user.avatar,
        "public_flags": 0,
        "flags": 0,
        "banner": None,
        "accent_color": None,
        "avatar_decoration_data": None,
        "primary_guild": None,
        "collectibles": None,
    }
    if user.bot:
        data["bot"] = True
    return data


def self_user_payload(user: UserRecord) -> JSON:
    """``GET /users/@me`` and READY's ``user``: the bot's own account."""
    data = user_payload(user)
    data.update(verified=True, mfa_enabled=False, email=None, locale="en-US", premium_type=0)
    return data


def member_payload(
    member: MemberRecord, *, with_user: bool = True, permissions: int | None = None
) -> JSON:
    data: JSON = {
        "roles": [str(role_id) for role_id in member.role_ids],
        "joined_at": member.joined_at,
        "deaf": member.deaf,
        "mute": member.mute,
        "flags": 0,
        "nick": member.nick,
        "avatar": None,
        "banner": None,
        "premium_since": None,
        "pending": False,
        "communication_disabled_until": None,
    }
    if with_user:
        data["user"] = user_payload(member.user)
    if permissions is not None:
        data["permissions"] = str(permissions)
    return data


def role_payload(role: RoleRecord) -> JSON:
    data: JSON = {
        "id": str(role.id),
        "name": role.name,
        "color": role.color,
        "colors": {"primary_color": role.color, "secondary_color": None, "tertiary_color": None},
        "hoist": role.hoist,
        "icon": None,
        "unicode_emoji": None,
        "position": role.position,
        "permissions": str(role.permissions),
        "managed": role.managed,
        "mentionable": role.mentionable,
        "flags": 0,
    }
    if role.bot_id is not None:
        data["tags"] = {"bot_id": str(role.bot_id)}
    return data


def thread_payload(channel: ChannelRecord, *, member_id: int | None = None) -> JSON:
    """A thread (or forum post) channel; ``member_id``: add that user's thread member
    object (``member``), as Discord does for the bot's own threads."""
    last_id = None if channel.last_message_id is None else str(channel.last_message_id)
    created = channel.created_at or iso_timestamp()
    data: JSON = {
        "id": str(channel.id),
        "type": channel.type,
        "guild_id": str(channel.guild_id),
        "parent_id": str(channel.parent_id),
        "owner_id": str(channel.owner_id),
        "name": channel.name,
        "last_message_id": last_id,
        "rate_limit_per_user": channel.rate_limit_per_user,
        "message_count": channel.message_count,
        "total_message_sent": channel.message_count,
        "member_count": min(len(channel.member_ids), 50),
        "flags": 0,
        "applied_tags": [],
        "thread_metadata": {
            "archived": channel.archived,
            "auto_archive_duration": channel.auto_archive_duration,
            "archive_timestamp": created,
            "locked": channel.locked,
            "create_timestamp": created,
            **({"invitable": True} if channel.type == 12 else {}),
        },
    }
    if member_id is not None and member_id in channel.member_ids:
        data["member"] = {
            "id": str(channel.id),
            "user_id": str(member_id),
            "join_timestamp": created,
            "flags": 0,
        }
    return data


def channel_payload(channel: ChannelRecord) -> JSON:
    if channel.is_thread:
        return thread_payload(channel)
    last_id = None if channel.last_message_id is None else str(channel.last_message_id)
    if channel.is_dm:
        return {
            "id": str(channel.id),
            "type": channel.type,
            "last_message_id": last_id,
            "flags": 0,
            "recipients": [user_payload(user) for user in channel.recipients],
        }
    data: JSON = {
        "id": str(channel.id),
        "type": channel.type,
        "guild_id": str(channel.guild_id),
        "name": channel.name,
        "position": channel.position,
        "permission_overwrites": [
            {"id": str(o.id), "type": o.type, "allow": str(o.allow), "deny": str(o.deny)}
            for o in channel.overwrites.values()
        ],
        "nsfw": channel.nsfw,
        "parent_id": None if channel.parent_id is None else str(channel.parent_id),
        "flags": 0,
    }
    if channel.type != 4:  # categories have no messages
        data.update(
            topic=channel.topic,
            last_message_id=last_id,
            rate_limit_per_user=channel.rate_limit_per_user,
        )
    if channel.is_forum:
        data.update(
            available_tags=[],
            default_reaction_emoji=None,
            default_sort_order=None,
            default_forum_layout=0,
            default_thread_rate_limit_per_user=0,
            default_auto_archive_duration=1440,
        )
    if channel.type == GUILD_VOICE:
        data.update(
            bitrate=channel.bitrate,
            user_limit=channel.user_limit,
            rtc_region=None,
            video_quality_mode=1,
        )
    return data


def guild_payload(guild: GuildRecord) -> JSON:
    """The REST guild object (``GET /guilds/{id}``)."""
    return {
        "id": str(guild.id),
        "name": guild.name,
        "icon": None,
        "icon_hash": None,
        "splash": None,
        "discovery_splash": None,
        "owner_id": str(guild.owner_id),
        "afk_channel_id": None,
        "afk_timeout": 300,
        "widget_enabled": False,
        "widget_channel_id": None,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "roles": [role_payload(role) for role in guild.roles.values()],
        "emojis": [],
        "stickers": [],
        "features": [],
        "mfa_level": 0,
        "application_id": None,
        "system_channel_id": None,
        "system_channel_flags": 0,
        "rules_channel_id": None,
        "safety_alerts_channel_id": None,
        "public_updates_channel_id": None,
        "max_presences": None,
        "max_members": 500000,
        "max_video_channel_users": 25,
        "max_stage_video_channel_users": 50,
        "vanity_url_code": None,
        "description": None,
        "banner": None,
        "premium_tier": 0,
        "premium_subscription_count": 0,
        "premium_progress_bar_enabled": False,
        "preferred_locale": guild.preferred_locale,
        "nsfw_level": 0,
        "nsfw": False,
        "incidents_data": None,
        "approximate_member_count": len(guild.members),
        "approximate_presence_count": 0,
    }


def guild_create_payload(
    guild: GuildRecord,
    *,
    voice_states: list[JSON],
    members: list[MemberRecord],
    joined_at: str | None,
    unavailable_key: bool,
    bot_id: int | None = None,
) -> JSON:
    """The gateway GUILD_CREATE payload: the REST guild plus the extra lists."""
    data = guild_payload(guild)
    data.update(
        joined_at=joined_at,
        large=len(guild.members) >= 250,
        # member_count is the real total; discord.py compares it with len(members)
        # to decide whether it must chunk.
        member_count=len(guild.members),
        voice_states=voice_states,
        members=[member_payload(member) for member in members],
        channels=[channel_payload(channel) for channel in guild.channels.values()],
        threads=[
            thread_payload(thread, member_id=bot_id)
            for thread in guild.threads.values()
            # Active ones the bot can see: public, or private ones it is in.
            if not thread.archived and (thread.type != 12 or bot_id in thread.member_ids)
        ],
        presences=[],
        stage_instances=[],
        guild_scheduled_events=[],
        soundboard_sounds=[],
        embedded_activities=[],
    )
    if unavailable_key:
        # Present (False) when the guild was announced in READY; absent for a guild
        # the bot joins later, which is how discord.py tells guild_available from
        # guild_join.
        data["unavailable"] = False
    return data


def attachment_payload(attachment: AttachmentRecord) -> JSON:
    data: JSON = {
        "id": str(attachment.id),
        "filename": attachment.filename,
        "size": attachment.size,
        "url": attachment.url,
        "proxy_url": attachment.proxy_url,
    }
    if attachment.width is not None and attachment.height is not None:
        data.update(width=attachment.width, height=attachment.height, placeholder_version=1)
    if attachment.content_type:
        data["content_type"] = attachment.content_type
    if attachment.description:
        data["description"] = attachment.description
    if attachment.ephemeral:
        data["ephemeral"] = True
    return data


def message_payload(state: FakeState, message: MessageRecord, *, nested: bool = False) -> JSON:
    guild = state.guilds.get(message.guild_id) if message.guild_id is not None else None
    data: JSON = {
        "id": str(message.id),
        "channel_id": str(message.channel_id),
        "type": message.type,
        "author": user_payload(message.author),
        "content": message.content,
        "timestamp": message.timestamp,
        "edited_timestamp": message.edited_timestamp,
        "tts": message.tts,
        "mention_everyone": message.mention_everyone,
        "mentions": [_mention_payload(guild, user) for user in message.mentions],
        "mention_roles": [str(role_id) for role_id in message.mention_roles],
        "attachments": [attachment_payload(a) for a in message.attachments],
        "embeds": message.embeds,
        "components": message.components,
        "pinned": False,
        "flags": message.flags,
    }
    if guild is not None:
        data["guild_id"] = str(guild.id)
        member = guild.member(message.author.id)
        if member is not None and message.webhook_id is None:
            data["member"] = member_payload(member, with_user=False)
    if message.nonce is not None:
        data["nonce"] = message.nonce
    if message.webhook_id is not None:
        data["webhook_id"] = str(message.webhook_id)
    if message.application_id is not None:
        data["application_id"] = str(message.application_id)
    if message.poll is not None:
        data["poll"] = message.poll
    if message.reactions:
        data["reactions"] = [
            {
                "emoji": _emoji_payload(emoji),
                "count": len(users),
                "count_details": {"burst": 0, "normal": len(users)},
                "me": state.bot_user_id in users,
                "me_burst": False,
                "burst_colors": [],
            }
            for emoji, users in message.reactions.items()
            if users
        ]
    if message.interaction is not None:
        data["interaction_metadata"] = message.interaction
    if message.thread_id is not None and not nested:
        thread = state.channels.get(message.thread_id)
        if thread is not None:
            data["thread"] = thread_payload(thread, member_id=state.bot_user_id)
    if message.message_reference is not None:
        data["message_reference"] = message.message_reference
        if not nested:
            ref = state.messages.get(message.reference_id or 0)
            # Discord sends null for a deleted referenced message.
            data["referenced_message"] = (
                None if ref is None or ref.deleted else message_payload(state, ref, nested=True)
            )
    return data


def _mention_payload(guild: GuildRecord | None, user: UserRecord) -> JSON:
    data = user_payload(user)
    member = guild.member(user.id) if guild is not None else None
    if member is not None:
        data["member"] = member_payload(member, with_user=False)
    return data


def _emoji_payload(emoji: str) -> JSON:
    name, _, emoji_id = emoji.partition(":")
    return {"id": emoji_id or None, "name": name}


def command_payload(command: AppCommandRecord) -> JSON:
    data = dict(command.data)
    data.update(
        id=str(command.id),
        application_id=str(command.application_id),
        version=str(command.version),
        type=command.type,
        name=command.name,
    )
    data.setdefault("description", "")
    data.setdefault("default_member_permissions", None)
    data.setdefault("nsfw", False)
    if command.guild_id is not None:
        data["guild_id"] = str(command.guild_id)
    return data


def interaction_channel_payload(
    state: FakeState, channel: ChannelRecord, member: MemberRecord | None
) -> JSON:
    """A channel inside an interaction: the channel plus the invoker's ``permissions``."""
    data = channel_payload(channel)
    guild = state.guild_of(channel)
    if guild is not None and member is not None:
        data["permissions"] = str(channel_permissions(guild, channel, member))
    else:
        data["permissions"] = str(ALL_PERMISSIONS)
    return data
