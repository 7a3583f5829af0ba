"""In-memory records of everything the fake Discord knows about.

These are plain dataclasses that tests can inspect directly; turning them into
Discord's JSON shapes lives in ``payloads.py``. Records compare by identity.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .snowflakes import iso_timestamp

# Channel types (subset of Discord's ChannelType).
GUILD_TEXT = 0
DM = 1
GUILD_VOICE = 2
GUILD_CATEGORY = 4
GUILD_ANNOUNCEMENT = 5
ANNOUNCEMENT_THREAD = 10
PUBLIC_THREAD = 11
PRIVATE_THREAD = 12
GUILD_FORUM = 15
GUILD_MEDIA = 16
THREAD_TYPES = (ANNOUNCEMENT_THREAD, PUBLIC_THREAD, PRIVATE_THREAD)

# Message flags.
FLAG_SUPPRESS_EMBEDS = 1 << 2
FLAG_HAS_THREAD = 1 << 5
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7

# Message types.
MESSAGE_DEFAULT = 0
MESSAGE_THREAD_CREATED = 18
MESSAGE_REPLY = 19
MESSAGE_CHAT_INPUT_COMMAND = 20


@dataclass(eq=False)
class UserRecord:
    id: int
    username: str
    global_name: str | None = None
    bot: bool = False
    avatar: str | None = None
    # When False, the bot gets 403/50007 when it tries to DM this user.
    accepts_dms: bool = True

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"

    @property
    def display_name(self) -> str:
        return self.global_name or self.username


@dataclass(eq=False)
class RoleRecord:
    id: int
    guild_id: int
    name: str
    permissions: int
    position: int = 0
    mentionable: bool = False
    hoist: bool = False
    managed: bool = False
    color: int = 0
    bot_id: int | None = None  # set on a bot's managed role

    @property
    def mention(self) -> str:
        # Discord renders the @everyone role as plain "@everyone".
        return "@everyone" if self.id == self.guild_id else f"<@&{self.id}>"


@dataclass(frozen=True)
class Overwrite:
    """A channel permission overwrite for a role (type 0) or a member (type 1)."""

    id: int
    type: int
    allow: int = 0
    deny: int = 0


@dataclass(eq=False)
class ChannelRecord:
    id: int
    type: int
    name: str | None
    guild_id: int | None = None
    position: int = 0
    parent_id: int | None = None
    topic: str | None = None
    nsfw: bool = False
    overwrites: dict[int, Overwrite] = field(default_factory=dict)
    recipients: list[UserRecord] = field(default_factory=list)  # DM channels only
    bitrate: int = 64000
    user_limit: int = 0
    rate_limit_per_user: int = 0
    last_message_id: int | None = None
    # Threads (parent_id is the text or forum channel): who started it, its state,
    # and who joined it. Forum posts are public threads of a forum channel.
    owner_id: int | None = None
    archived: bool = False
    locked: bool = False
    auto_archive_duration: int = 1440
    created_at: str | None = None
    message_count: int = 0
    member_ids: list[int] = field(default_factory=list)

    @property
    def is_dm(self) -> bool:
        return self.type == DM

    @property
    def is_thread(self) -> bool:
        return self.type in THREAD_TYPES

    @property
    def is_forum(self) -> bool:
        return self.type in (GUILD_FORUM, GUILD_MEDIA)

    @property
    def is_voice(self) -> bool:
        return self.type == GUILD_VOICE

    @property
    def mention(self) -> str:
        return f"<#{self.id}>"


@dataclass(eq=False)
class MemberRecord:
    user: UserRecord
    guild_id: int
    role_ids: list[int] = field(default_factory=list)  # never includes @everyone
    joined_at: str = field(default_factory=iso_timestamp)
    nick: str | None = None
    deaf: bool = False
    mute: bool = False

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def mention(self) -> str:
        return self.user.mention


@dataclass(eq=False)
class GuildRecord:
    id: int
    name: str
    owner_id: int
    roles: dict[int, RoleRecord] = field(default_factory=dict)
    channels: dict[int, ChannelRecord] = field(default_factory=dict)
    # Active threads and forum posts (Discord lists them apart from channels).
    threads: dict[int, ChannelRecord] = field(default_factory=dict)
    members: dict[int, MemberRecord] = field(default_factory=dict)
    preferred_locale: str = "en-US"
    bot_role_id: int | None = None

    @property
    def everyone_role(self) -> RoleRecord:
        return self.roles[self.id]

    def member(self, user_id: int) -> MemberRecord | None:
        return self.members.get(user_id)


@dataclass(eq=False)
class AttachmentRecord:
    id: int
    filename: str
    data: bytes
    url: str
    content_type: str | None = None
    description: str | None = None
    ephemeral: bool = False
    # Pixel size of an image Discord could read (PNG, JPEG, GIF, WebP).
    width: int | None = None
    height: int | None = None

    # Discord's media proxy serves the same file; the fake serves it at its own path.
    proxy_url: str = ""

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(eq=False)
class MessageRecord:
    """A message as stored by the server, with Discord's computed fields."""

    id: int
    channel_id: int
    guild_id: int | None
    author: UserRecord
    content: str = ""
    timestamp: str = field(default_factory=iso_timestamp)
    type: int = MESSAGE_DEFAULT
    flags: int = 0
    tts: bool = False
    nonce: str | int | None = None
    embeds: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[AttachmentRecord] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    sticker_ids: list[int] = field(default_factory=list)
    poll: dict[str, Any] | None = None
    message_reference: dict[str, Any] | None = None
    # ``allowed_mentions`` exactly as the sender passed it (None if omitted).
    allowed_mentions: dict[str, Any] | None = None
    # Computed like Discord does, honouring allowed_mentions.
    mentions: list[UserRecord] = field(default_factory=list)
    mention_roles: list[int] = field(default_factory=list)
    mention_everyone: bool = False
    edits: list[str] = field(default_factory=list)  # previous contents, oldest first
    edited_timestamp: str | None = None
    deleted: bool = False
    # emoji (as Discord renders it in URLs, e.g. "👍" or "name:id") -> user ids
    reactions: dict[str, list[int]] = field(default_factory=dict)
    webhook_id: int | None = None
    application_id: int | None = None
    interaction: dict[str, Any] | None = None  # interaction_metadata for responses
    thread_id: int | None = None  # the thread started from this message
    seq: int = 0  # server-wide creation order, used by waiters

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & FLAG_EPHEMERAL)

    @property
    def loading(self) -> bool:
        """True for a deferred interaction response that has not been filled yet."""
        return bool(self.flags & FLAG_LOADING)

    @property
    def mention_ids(self) -> list[int]:
        return [user.id for user in self.mentions]

    @property
    def reference_id(self) -> int | None:
        ref = self.message_reference
        if not ref or ref.get("message_id") is None:
            return None
        return int(ref["message_id"])


@dataclass(eq=False)
class AppCommandRecord:
    """An application command as registered through the REST API."""

    id: int
    application_id: int
    guild_id: int | None
    name: str
    type: int
    data: dict[str, Any]  # the registration payload (options, permissions, ...)
    version: int

    @property
    def options(self) -> list[dict[str, Any]]:
        return self.data.get("options") or []

    @property
    def default_member_permissions(self) -> int | None:
        value = self.data.get("default_member_permissions")
        return None if value is None else int(value)


@dataclass
class FakeState:
    """All server-side records, indexed for the REST handlers."""

    bot_user_id: int = 0
    users: dict[int, UserRecord] = field(default_factory=dict)
    guilds: dict[int, GuildRecord] = field(default_factory=dict)
    channels: dict[int, ChannelRecord] = field(default_factory=dict)
    messages: dict[int, MessageRecord] = field(default_factory=dict)
    channel_messages: dict[int, list[MessageRecord]] = field(default_factory=dict)
    dm_channels: dict[int, ChannelRecord] = field(default_factory=dict)  # by user id
    # guild id (None for global) -> command id -> command
    commands: dict[int | None, dict[int, AppCommandRecord]] = field(default_factory=dict)

    def guild_of(self, channel: ChannelRecord) -> GuildRecord | None:
        return None if channel.guild_id is None else self.guilds.get(channel.guild_id)

    def add_message(self, message: MessageRecord) -> None:
        self.messages[message.id] = message
        self.channel_messages.setdefault(message.channel_id, []).append(message)
        channel = self.channels.get(message.channel_id)
        if channel is not None:
            channel.last_message_id = message.id
            if channel.is_thread and message.type != MESSAGE_THREAD_CREATED:
                channel.message_count += 1

    def iter_messages(self, channel_id: int) -> Iterator[MessageRecord]:
        return iter(self.channel_messages.get(channel_id, ()))

    def visible_commands(self, guild_id: int | None) -> list[AppCommandRecord]:
        """Global commands plus ``guild_id``'s own ones, like a Discord client sees."""
        found = list(self.commands.get(None, {}).values())
        if guild_id is not None:
            found.extend(self.commands.get(guild_id, {}).values())
        return found
