"""Test helpers that build the world: users, guilds, roles, channels, members, DMs.

Everything created while the bot is connected is announced on the gateway with
the event Discord would send (GUILD_CREATE, CHANNEL_CREATE, GUILD_MEMBER_ADD, ...).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from . import gateway as gw
from .base import ChannelLike, GuildLike, ServerCore, UserLike
from .gateway import GatewaySession
from .payloads import (
    channel_payload,
    guild_create_payload,
    member_payload,
    role_payload,
    user_payload,
)
from .permissions import (
    DEFAULT_BOT_PERMISSIONS,
    DEFAULT_EVERYONE_PERMISSIONS,
    base_permissions,
    channel_permissions,
)
from .state import (
    DM,
    GUILD_CATEGORY,
    GUILD_TEXT,
    GUILD_VOICE,
    ChannelRecord,
    GuildRecord,
    MemberRecord,
    Overwrite,
    RoleRecord,
    UserRecord,
)
from .voice import VoiceStateRecord

OverwriteTarget = RoleRecord | MemberRecord | UserRecord


class GuildHelpers(ServerCore):
    # -- users ---------------------------------------------------------------

    def create_user(
        self, username: str, *, bot: bool = False, global_name: str | None = None
    ) -> UserRecord:
        user = UserRecord(id=self.ids.next(), username=username, global_name=global_name, bot=bot)
        self.state.users[user.id] = user
        return user

    # -- guilds and roles ----------------------------------------------------

    def create_guild(
        self,
        name: str = "Test Server",
        owner: UserLike | None = None,
        *,
        bot_permissions: int = DEFAULT_BOT_PERMISSIONS,
        everyone_permissions: int = DEFAULT_EVERYONE_PERMISSIONS,
        locale: str = "en-US",
        shard: int | None = None,
    ) -> GuildRecord:
        """A guild owned by ``owner`` (default ``server.owner``) with the bot in it.

        The bot gets a managed role with ``bot_permissions``, as an invite would.
        ``shard``: give it an id whose events go to that shard of the server's
        ``shard_count`` (``(guild_id >> 22) % shard_count``).
        """
        owner_user = self.owner if owner is None else self._user(owner)
        guild_id = (
            self.ids.next()
            if shard is None
            else self.ids.next_on_shard(shard, self.gateway.shard_count)
        )
        guild = GuildRecord(id=guild_id, name=name, owner_id=owner_user.id, preferred_locale=locale)
        guild.roles[guild.id] = RoleRecord(
            id=guild.id, guild_id=guild.id, name="@everyone", permissions=everyone_permissions
        )
        bot_role = RoleRecord(
            id=self.ids.next(),
            guild_id=guild.id,
            name=self.bot_user.username,
            permissions=bot_permissions,
            position=1,
            managed=True,
            bot_id=self.bot_user.id,
        )
        guild.roles[bot_role.id] = bot_role
        guild.bot_role_id = bot_role.id
        guild.members[owner_user.id] = MemberRecord(user=owner_user, guild_id=guild.id)
        guild.members[self.bot_user.id] = MemberRecord(
            user=self.bot_user, guild_id=guild.id, role_ids=[bot_role.id]
        )
        self.state.guilds[guild.id] = guild
        self.gateway.dispatch(
            "GUILD_CREATE",
            lambda session: self._guild_create_for(session, guild, announced=False),
            intent=gw.GUILDS,
            guild_id=guild.id,
        )
        self._changed()
        return guild

    def create_role(
        self,
        guild: GuildLike,
        name: str,
        permissions: int = 0,
        *,
        mentionable: bool = False,
        hoist: bool = False,
        color: int = 0,
    ) -> RoleRecord:
        record = self._guild(guild)
        role = RoleRecord(
            id=self.ids.next(),
            guild_id=record.id,
            name=name,
            permissions=permissions,
            position=len(record.roles),
            mentionable=mentionable,
            hoist=hoist,
            color=color,
        )
        record.roles[role.id] = role
        self.gateway.dispatch(
            "GUILD_ROLE_CREATE",
            {"guild_id": str(record.id), "role": role_payload(role)},
            intent=gw.GUILDS,
            guild_id=record.id,
        )
        self._changed()
        return role

    # -- channels ------------------------------------------------------------

    def create_text_channel(
        self,
        guild: GuildLike,
        name: str,
        *,
        topic: str | None = None,
        category: ChannelRecord | None = None,
        nsfw: bool = False,
        overwrites: dict[OverwriteTarget, tuple[int, int]] | None = None,
    ) -> ChannelRecord:
        return self._create_channel(
            guild,
            name,
            GUILD_TEXT,
            category=category,
            overwrites=overwrites,
            topic=topic,
            nsfw=nsfw,
        )

    def create_voice_channel(
        self,
        guild: GuildLike,
        name: str,
        *,
        category: ChannelRecord | None = None,
        user_limit: int = 0,
        overwrites: dict[OverwriteTarget, tuple[int, int]] | None = None,
    ) -> ChannelRecord:
        return self._create_channel(
            guild,
            name,
            GUILD_VOICE,
            category=category,
            overwrites=overwrites,
            user_limit=user_limit,
        )

    def create_category(
        self,
        guild: GuildLike,
        name: str,
        *,
        overwrites: dict[OverwriteTarget, tuple[int, int]] | None = None,
    ) -> ChannelRecord:
        return self._create_channel(
            guild, name, GUILD_CATEGORY, category=None, overwrites=overwrites
        )

    def _create_channel(
        self,
        guild: GuildLike,
        name: str,
        channel_type: int,
        *,
        category: ChannelRecord | None,
        overwrites: dict[OverwriteTarget, tuple[int, int]] | None,
        **extra: Any,
    ) -> ChannelRecord:
        record = self._guild(guild)
        position = sum(1 for c in record.channels.values() if c.type == channel_type)
        channel = ChannelRecord(
            id=self.ids.next(),
            type=channel_type,
            name=name,
            guild_id=record.id,
            position=position,
            parent_id=None if category is None else category.id,
            **extra,
        )
        for target, (allow, deny) in (overwrites or {}).items():
            overwrite = _make_overwrite(target, allow, deny)
            channel.overwrites[overwrite.id] = overwrite
        record.channels[channel.id] = channel
        self.state.channels[channel.id] = channel
        self.gateway.dispatch(
            "CHANNEL_CREATE", channel_payload(channel), intent=gw.GUILDS, guild_id=record.id
        )
        self._changed()
        return channel

    def set_overwrite(
        self, channel: ChannelLike, target: OverwriteTarget, *, allow: int = 0, deny: int = 0
    ) -> None:
        """Set (or with allow=deny=0, remove) a permission overwrite; sends CHANNEL_UPDATE."""
        record = self._channel(channel)
        overwrite = _make_overwrite(target, allow, deny)
        if allow or deny:
            record.overwrites[overwrite.id] = overwrite
        else:
            record.overwrites.pop(overwrite.id, None)
        self.gateway.dispatch(
            "CHANNEL_UPDATE", channel_payload(record), intent=gw.GUILDS, guild_id=record.guild_id
        )
        self._changed()

    def create_dm(self, user: UserLike) -> ChannelRecord:
        """The DM channel between the bot and ``user`` (the same one on every call)."""
        recipient = self._user(user)
        existing = self.state.dm_channels.get(recipient.id)
        if existing is not None:
            return existing
        channel = ChannelRecord(id=self.ids.next(), type=DM, name=None, recipients=[recipient])
        self.state.dm_channels[recipient.id] = channel
        self.state.channels[channel.id] = channel
        self._changed()
        return channel

    # -- members -------------------------------------------------------------

    def create_member(
        self,
        guild: GuildLike,
        name: str | None = None,
        *,
        user: UserLike | None = None,
        permissions: int | None = None,
        roles: Iterable[RoleRecord] = (),
        bot: bool = False,
        nick: str | None = None,
    ) -> MemberRecord:
        """Add a member: a new user called ``name``, or an existing ``user``.

        ``permissions`` creates a dedicated role granting them (e.g. MANAGE_GUILD
        or ADMINISTRATOR); without it the member only has @everyone's permissions.
        """
        record = self._guild(guild)
        if user is not None:
            member_user = self._user(user)
        elif name is not None:
            member_user = self.create_user(name, bot=bot)
        else:
            raise ValueError("create_member needs a name or an existing user")
        if member_user.id in record.members:
            raise ValueError(f"{member_user.username} is already a member of {record.name}")
        role_ids = [role.id for role in roles]
        if permissions:
            role = self.create_role(record, f"{member_user.username}-role", permissions)
            role_ids.append(role.id)
        member = MemberRecord(user=member_user, guild_id=record.id, role_ids=role_ids, nick=nick)
        record.members[member_user.id] = member
        data = member_payload(member)
        data["guild_id"] = str(record.id)
        self.gateway.dispatch("GUILD_MEMBER_ADD", data, intent=gw.GUILD_MEMBERS, guild_id=record.id)
        self._changed()
        return member

    def remove_member(self, guild: GuildLike, user: UserLike) -> None:
        record = self._guild(guild)
        member_user = self._user(user)
        if record.members.pop(member_user.id, None) is None:
            raise LookupError(f"{member_user.username} is not a member of {record.name}")
        self.gateway.dispatch(
            "GUILD_MEMBER_REMOVE",
            {"guild_id": str(record.id), "user": user_payload(member_user)},
            intent=gw.GUILD_MEMBERS,
            guild_id=record.id,
        )
        self._changed()

    def give_role(self, member: MemberRecord, role: RoleRecord) -> None:
        """Add ``role`` to ``member`` (GUILD_MEMBER_UPDATE)."""
        if role.id not in member.role_ids:
            member.role_ids.append(role.id)
        self._member_updated(self._guild(member.guild_id), member)

    def take_role(self, member: MemberRecord, role: RoleRecord) -> None:
        """Remove ``role`` from ``member`` (GUILD_MEMBER_UPDATE)."""
        if role.id in member.role_ids:
            member.role_ids.remove(role.id)
        self._member_updated(self._guild(member.guild_id), member)

    def _member_updated(self, guild: GuildRecord, member: MemberRecord) -> None:
        data = member_payload(member)
        data["guild_id"] = str(guild.id)
        self.gateway.dispatch(
            "GUILD_MEMBER_UPDATE", data, intent=gw.GUILD_MEMBERS, guild_id=guild.id
        )
        self._changed()

    def member(self, guild: GuildLike, user: UserLike) -> MemberRecord:
        record = self._guild(guild)
        found = record.member(self._user(user).id)
        if found is None:
            raise LookupError(f"user {self._user(user).username} is not in {record.name}")
        return found

    def bot_member(self, guild: GuildLike) -> MemberRecord:
        return self.member(guild, self.bot_user)

    def permissions_for(self, member: MemberRecord, channel: ChannelLike | None = None) -> int:
        """Guild-level permissions, or channel-level ones when ``channel`` is given."""
        guild = self._guild(member.guild_id)
        if channel is None:
            return base_permissions(guild, member)
        return channel_permissions(guild, self._channel(channel), member)

    # -- voice ---------------------------------------------------------------

    def set_voice_state(
        self,
        member: MemberRecord,
        channel: ChannelRecord | None,
        *,
        self_mute: bool = False,
        self_deaf: bool = False,
        dave: bool = True,
    ) -> VoiceStateRecord:
        """Move a (non-bot) member into ``channel`` or out of voice (None).

        The member's voice client connects to (or leaves) the channel's call.
        ``dave=False``: a client without DAVE support, which downgrades an E2EE
        call to transport-only encryption while it is there.
        """
        guild = self._guild(member.guild_id)
        self.voice_server.dave.member_support[(guild.id, member.id)] = dave
        if channel is not None and not channel.is_voice:
            raise ValueError(f"#{channel.name} is not a voice channel")
        previous = self.voice.get(guild.id, member.id)
        session_id = previous.session_id if previous else f"user-voice-{self.ids.next()}"
        state = self.voice.update(
            guild.id,
            member.id,
            None if channel is None else channel.id,
            session_id=session_id,
            self_mute=self_mute,
            self_deaf=self_deaf,
        )
        self._dispatch_voice_state(guild, state)
        return state

    def voice_state(self, guild: GuildLike, user: UserLike) -> VoiceStateRecord | None:
        return self.voice.get(self._guild(guild).id, self._user(user).id)

    def _dispatch_voice_state(self, guild: GuildRecord, state: VoiceStateRecord) -> None:
        self.gateway.dispatch(
            "VOICE_STATE_UPDATE",
            self.voice.event_payload(guild, state),
            intent=gw.GUILD_VOICE_STATES,
            guild_id=guild.id,
        )
        self._changed()

    # -- gateway payloads ----------------------------------------------------

    def _guild_create_for(
        self, session: GatewaySession, guild: GuildRecord, *, announced: bool
    ) -> dict[str, Any]:
        voice_states = self.voice.in_guild(guild.id)
        if session.intents & gw.GUILD_MEMBERS:
            members = list(guild.members.values())
        else:
            # Without the privileged intent Discord only sends the bot itself and
            # members in voice; discord.py then does not try to chunk.
            in_voice = {state.user_id for state in voice_states}
            members = [
                m for m in guild.members.values() if m.id == self.bot_user.id or m.id in in_voice
            ]
        return guild_create_payload(
            guild,
            voice_states=[state.payload(with_guild=False) for state in voice_states],
            members=members,
            joined_at=guild.members[self.bot_user.id].joined_at,
            unavailable_key=announced,
            bot_id=self.bot_user.id,
        )


def _make_overwrite(target: OverwriteTarget, allow: int, deny: int) -> Overwrite:
    if isinstance(target, RoleRecord):
        return Overwrite(id=target.id, type=0, allow=allow, deny=deny)
    return Overwrite(id=target.id, type=1, allow=allow, deny=deny)
