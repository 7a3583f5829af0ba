"""Permission bits and Discord's permission computation.

The algorithm follows Discord's documented order: base permissions from
@everyone and the member's roles, owner/ADMINISTRATOR short-circuit, then the
channel's @everyone, role and member overwrites.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .state import ChannelRecord, GuildRecord, MemberRecord

CREATE_INSTANT_INVITE = 1 << 0
KICK_MEMBERS = 1 << 1
BAN_MEMBERS = 1 << 2
ADMINISTRATOR = 1 << 3
MANAGE_CHANNELS = 1 << 4
MANAGE_GUILD = 1 << 5
ADD_REACTIONS = 1 << 6
VIEW_AUDIT_LOG = 1 << 7
PRIORITY_SPEAKER = 1 << 8
STREAM = 1 << 9
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
SEND_TTS_MESSAGES = 1 << 12
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
MENTION_EVERYONE = 1 << 17
USE_EXTERNAL_EMOJIS = 1 << 18
VIEW_GUILD_INSIGHTS = 1 << 19
CONNECT = 1 << 20
SPEAK = 1 << 21
MUTE_MEMBERS = 1 << 22
DEAFEN_MEMBERS = 1 << 23
MOVE_MEMBERS = 1 << 24
USE_VAD = 1 << 25
CHANGE_NICKNAME = 1 << 26
MANAGE_NICKNAMES = 1 << 27
MANAGE_ROLES = 1 << 28
MANAGE_WEBHOOKS = 1 << 29
MANAGE_GUILD_EXPRESSIONS = 1 << 30
USE_APPLICATION_COMMANDS = 1 << 31
REQUEST_TO_SPEAK = 1 << 32
MANAGE_EVENTS = 1 << 33
MANAGE_THREADS = 1 << 34
CREATE_PUBLIC_THREADS = 1 << 35
CREATE_PRIVATE_THREADS = 1 << 36
USE_EXTERNAL_STICKERS = 1 << 37
SEND_MESSAGES_IN_THREADS = 1 << 38
USE_EMBEDDED_ACTIVITIES = 1 << 39
MODERATE_MEMBERS = 1 << 40
SEND_VOICE_MESSAGES = 1 << 46
SEND_POLLS = 1 << 49

# Same value as ``discord.Permissions.all()`` in discord.py 2.7.
ALL_PERMISSIONS = 8866461766385663

# What a fresh guild's @everyone role gets: a "plain member" has only these.
DEFAULT_EVERYONE_PERMISSIONS = (
    CREATE_INSTANT_INVITE
    | ADD_REACTIONS
    | STREAM
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | USE_EXTERNAL_EMOJIS
    | CONNECT
    | SPEAK
    | USE_VAD
    | CHANGE_NICKNAME
    | USE_APPLICATION_COMMANDS
    | CREATE_PUBLIC_THREADS
    | CREATE_PRIVATE_THREADS
    | USE_EXTERNAL_STICKERS
    | SEND_MESSAGES_IN_THREADS
    | USE_EMBEDDED_ACTIVITIES
    | SEND_VOICE_MESSAGES
    | SEND_POLLS
)

# The bot's managed role: what a typical invite link grants a chat/voice bot.
DEFAULT_BOT_PERMISSIONS = (
    DEFAULT_EVERYONE_PERMISSIONS | MANAGE_MESSAGES | MENTION_EVERYONE | MANAGE_THREADS
)

# What an app can do in a DM channel (sent as app_permissions for DM interactions).
DM_PERMISSIONS = (
    VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS | ATTACH_FILES | READ_MESSAGE_HISTORY | ADD_REACTIONS
)


def base_permissions(guild: GuildRecord, member: MemberRecord) -> int:
    """Guild-level permissions of ``member`` (no channel overwrites)."""
    if member.user.id == guild.owner_id:
        return ALL_PERMISSIONS
    perms = guild.everyone_role.permissions
    for role_id in member.role_ids:
        role = guild.roles.get(role_id)
        if role is not None:
            perms |= role.permissions
    if perms & ADMINISTRATOR:
        return ALL_PERMISSIONS
    return perms


def channel_permissions(guild: GuildRecord, channel: ChannelRecord, member: MemberRecord) -> int:
    """Permissions of ``member`` in ``channel`` including overwrites.

    A thread has no overwrites of its own: it has its parent's permissions, except
    that sending there takes SEND_MESSAGES_IN_THREADS (reported as SEND_MESSAGES
    here, so one check fits both), and a private thread is only seen by its members
    and by those who may manage threads."""
    if channel.is_thread:
        parent = guild.channels.get(channel.parent_id or 0)
        if parent is None:
            return 0
        perms = channel_permissions(guild, parent, member)
        if perms & ADMINISTRATOR:
            return perms
        private = channel.type == 12
        if private and member.user.id not in channel.member_ids and not perms & MANAGE_THREADS:
            return 0
        perms &= ~SEND_MESSAGES
        if perms & SEND_MESSAGES_IN_THREADS:
            perms |= SEND_MESSAGES
        return perms
    perms = base_permissions(guild, member)
    if perms & ADMINISTRATOR or member.user.id == guild.owner_id:
        return ALL_PERMISSIONS
    overwrites = channel.overwrites
    everyone = overwrites.get(guild.id)
    if everyone is not None:
        perms = (perms & ~everyone.deny) | everyone.allow
    allow = deny = 0
    for role_id in member.role_ids:
        overwrite = overwrites.get(role_id)
        if overwrite is not None:
            allow |= overwrite.allow
            deny |= overwrite.deny
    perms = (perms & ~deny) | allow
    personal = overwrites.get(member.user.id)
    if personal is not None:
        perms = (perms & ~personal.deny) | personal.allow
    # Without VIEW_CHANNEL nothing else in the channel is usable.
    if not perms & VIEW_CHANNEL:
        return 0
    return perms


def has(perms: int, needed: int) -> bool:
    return perms & needed == needed
