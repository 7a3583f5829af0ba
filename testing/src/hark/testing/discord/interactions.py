"""Invoking interactions as a user would: slash commands, autocomplete, components, modals.

Commands are checked the way the Discord client offers them (registered for the
guild or globally, allowed in this context, default_member_permissions), and
option values are typed by the stored option schema (see ``options.py``).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any

from .base import ChannelLike, GuildLike, MessageLike, ServerCore, UserLike
from .components import find_component, focused_options, modal_submission
from .interaction_record import (
    APPLICATION_COMMAND,
    AUTOCOMPLETE,
    MESSAGE_COMPONENT,
    MODAL_SUBMIT,
    CommandNotAvailable,
    InteractionRecord,
)
from .messages import MessageHelpers
from .options import OptionContext, build_command_options, build_target_user
from .payloads import interaction_channel_payload, member_payload, message_payload, user_payload
from .permissions import (
    DM_PERMISSIONS,
    USE_APPLICATION_COMMANDS,
    VIEW_CHANNEL,
    base_permissions,
    channel_permissions,
    has,
)
from .state import (
    AppCommandRecord,
    ChannelRecord,
    GuildRecord,
    MemberRecord,
    MessageRecord,
    UserRecord,
)

ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024


class InteractionHelpers(MessageHelpers, ServerCore):
    interaction_ack_timeout: float | None
    _interactions: dict[int, InteractionRecord]

    # -- command visibility ----------------------------------------------------

    def commands(self, guild: GuildLike | None = None) -> list[AppCommandRecord]:
        """Commands visible in ``guild``: global ones plus that guild's (global only if None)."""
        guild_id = None if guild is None else self._guild(guild).id
        return self.state.visible_commands(guild_id)

    def command(
        self, name: str, guild: GuildLike | None = None, *, type: int = 1
    ) -> AppCommandRecord:
        for command in self.commands(guild):
            if command.name == name and command.type == type:
                return command
        raise CommandNotAvailable(f"no command {name!r} (type {type}) is registered for {guild}")

    def _available_command(
        self,
        guild: GuildRecord | None,
        channel: ChannelRecord,
        user: UserRecord,
        name: str,
        command_type: int,
    ) -> AppCommandRecord:
        """The command a user could pick in this context, or CommandNotAvailable."""
        visible = self.state.visible_commands(None if guild is None else guild.id)
        # A guild command shadows a global one with the same name in the client.
        matches = sorted(
            (c for c in visible if c.name == name and c.type == command_type),
            key=lambda c: c.guild_id is None,
        )
        if not matches:
            names = sorted(c.name for c in visible if c.type == command_type)
            where = "DMs" if guild is None else f"guild {guild.name!r}"
            raise CommandNotAvailable(
                f"command {name!r} is not registered for {where}; visible: {names}"
            )
        command = matches[0]
        contexts = command.data.get("contexts")
        if guild is None:
            in_dms = (
                1 in contexts
                if contexts is not None
                else command.data.get("dm_permission") is not False
            )
            if not in_dms:
                raise CommandNotAvailable(f"command {name!r} is not available in DMs")
            return command
        if contexts is not None and 0 not in contexts:
            raise CommandNotAvailable(f"command {name!r} is not available in guilds")
        member = guild.member(user.id)
        if member is None:
            raise CommandNotAvailable(f"{user.username} is not a member of {guild.name}")
        if not has(
            channel_permissions(guild, channel, member), VIEW_CHANNEL | USE_APPLICATION_COMMANDS
        ):
            raise CommandNotAvailable(f"{user.username} cannot use commands in #{channel.name}")
        required = command.default_member_permissions
        if required is not None and not has(base_permissions(guild, member), required):
            raise CommandNotAvailable(
                f"{user.username} lacks default_member_permissions={required} for {name!r}"
            )
        return command

    # -- invoking ------------------------------------------------------------

    async def invoke_slash(
        self,
        guild: GuildLike | None,
        channel: ChannelLike,
        member: UserLike,
        name: str,
        options: Mapping[str, Any] | None = None,
        subcommand: str | Sequence[str] | None = None,
        *,
        locale: str = "en-US",
    ) -> InteractionRecord:
        """Run ``/name [subcommand...]`` as ``member`` (``guild`` None for a DM).

        ``name`` may contain the subcommand path ("plugins enable"). Option values
        are plain Python values, records (users, members, roles, channels) or
        ``(filename, bytes)`` for attachments.
        """
        guild_rec, channel_rec, user = self._interaction_context(guild, channel, member)
        path = name.split()
        if isinstance(subcommand, str):
            path += subcommand.split()
        elif subcommand:
            path += list(subcommand)
        command = self._available_command(guild_rec, channel_rec, user, path[0], 1)
        ctx = self._option_context(guild_rec)
        data: dict[str, Any] = {"id": str(command.id), "name": command.name, "type": 1}
        data["options"] = build_command_options(ctx, command, path[1:], options or {})
        if ctx.resolved:
            data["resolved"] = ctx.resolved
        if command.guild_id is not None:
            data["guild_id"] = str(command.guild_id)
        return await self._send_interaction(
            APPLICATION_COMMAND, data, guild_rec, channel_rec, user, command=command, locale=locale
        )

    async def invoke_autocomplete(
        self,
        guild: GuildLike | None,
        channel: ChannelLike,
        member: UserLike,
        name: str,
        options: Mapping[str, Any],
        focused: str,
        *,
        timeout: float = 10.0,
    ) -> list[dict[str, Any]]:
        """Type into option ``focused`` of ``/name ...``; returns the bot's choices."""
        guild_rec, channel_rec, user = self._interaction_context(guild, channel, member)
        path = name.split()
        command = self._available_command(guild_rec, channel_rec, user, path[0], 1)
        # While typing, the focused value is a raw string and may be partial.
        data: dict[str, Any] = {"id": str(command.id), "name": command.name, "type": 1}
        data["options"] = focused_options(command, path[1:], options, focused)
        if command.guild_id is not None:
            data["guild_id"] = str(command.guild_id)
        record = await self._send_interaction(
            AUTOCOMPLETE, data, guild_rec, channel_rec, user, command=command
        )
        await record.wait_ack(timeout)
        return record.choices or []

    async def invoke_context_menu(
        self,
        guild: GuildLike | None,
        channel: ChannelLike,
        member: UserLike,
        name: str,
        target: UserLike | MessageRecord,
    ) -> InteractionRecord:
        """Run a user (target: user/member) or message (target: message) context menu."""
        guild_rec, channel_rec, user = self._interaction_context(guild, channel, member)
        command_type = 3 if isinstance(target, MessageRecord) else 2
        command = self._available_command(guild_rec, channel_rec, user, name, command_type)
        ctx = self._option_context(guild_rec)
        if isinstance(target, MessageRecord):
            target_id = target.id
            ctx.resolve("messages", target.id, message_payload(self.state, target))
        else:
            target_id = int(build_target_user(ctx, self._user(target)))
        data: dict[str, Any] = {
            "id": str(command.id),
            "name": command.name,
            "type": command_type,
            "target_id": str(target_id),
            "resolved": ctx.resolved,
        }
        if command.guild_id is not None:
            data["guild_id"] = str(command.guild_id)
        return await self._send_interaction(
            APPLICATION_COMMAND, data, guild_rec, channel_rec, user, command=command
        )

    async def click_button(
        self, message: MessageLike, member: UserLike, custom_id: str
    ) -> InteractionRecord:
        """Press a button (by ``custom_id``) on a message the bot sent."""
        return await self._component_interaction(message, member, custom_id, None)

    async def select_options(
        self, message: MessageLike, member: UserLike, custom_id: str, values: Sequence[str]
    ) -> InteractionRecord:
        """Pick ``values`` in a string select menu."""
        return await self._component_interaction(message, member, custom_id, list(values))

    async def submit_modal(
        self, opened_by: InteractionRecord, values: Mapping[str, str]
    ) -> InteractionRecord:
        """Fill in and submit the modal the bot opened in response to ``opened_by``."""
        modal = opened_by.modal
        if modal is None:
            raise AssertionError(f"interaction {opened_by.id} did not open a modal")
        components = modal_submission(modal.get("components") or [], values)
        data = {"custom_id": modal["custom_id"], "components": components}
        channel = self._channel(opened_by.channel_id)
        guild = None if opened_by.guild_id is None else self._guild(opened_by.guild_id)
        return await self._send_interaction(MODAL_SUBMIT, data, guild, channel, opened_by.user)

    # -- plumbing ----------------------------------------------------------------

    def _interaction_context(
        self, guild: GuildLike | None, channel: ChannelLike, member: UserLike
    ) -> tuple[GuildRecord | None, ChannelRecord, UserRecord]:
        guild_rec = None if guild is None else self._guild(guild)
        channel_rec = self._channel(channel)
        user = self._user(member)
        if guild_rec is not None and channel_rec.guild_id != guild_rec.id:
            raise ValueError(f"#{channel_rec.name} is not in {guild_rec.name}")
        if guild_rec is None and not channel_rec.is_dm:
            raise ValueError("guild=None requires a DM channel")
        return guild_rec, channel_rec, user

    def _option_context(self, guild: GuildRecord | None) -> OptionContext:
        return OptionContext(
            state=self.state,
            guild=guild,
            make_attachment=lambda name, data: self._store_attachment(name, data, ephemeral=True),
        )

    async def _component_interaction(
        self, message: MessageLike, member: UserLike, custom_id: str, values: list[str] | None
    ) -> InteractionRecord:
        record = self._message(message)
        component = find_component(record.components, custom_id)
        if component is None:
            raise LookupError(f"message {record.id} has no component with custom_id {custom_id!r}")
        if component.get("disabled"):
            raise AssertionError(f"component {custom_id!r} is disabled")
        channel = self._channel(record.channel_id)
        guild = self.state.guild_of(channel)
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component["type"]}
        if values is not None:
            data["values"] = values
        return await self._send_interaction(
            MESSAGE_COMPONENT, data, guild, channel, self._user(member), source=record
        )

    async def _send_interaction(
        self,
        interaction_type: int,
        data: dict[str, Any],
        guild: GuildRecord | None,
        channel: ChannelRecord,
        user: UserRecord,
        *,
        command: AppCommandRecord | None = None,
        source: MessageRecord | None = None,
        locale: str = "en-US",
    ) -> InteractionRecord:
        interaction_id = self.ids.next()
        token = f"aW50ZXJhY3Rpb24{interaction_id}.{secrets.token_urlsafe(32)}"
        payload = self._interaction_payload(
            interaction_id, token, interaction_type, data, guild, channel, user, locale
        )
        if source is not None:
            payload["message"] = message_payload(self.state, source)
        record = InteractionRecord(
            id=interaction_id,
            token=token,
            type=interaction_type,
            guild_id=None if guild is None else guild.id,
            channel_id=channel.id,
            user=user,
            command=command,
            payload=payload,
            ack_timeout=self.interaction_ack_timeout,
            waiters=self._waiters,
            describe_failures=self._recent_failures,
            source_message=source,
        )
        self._interactions[interaction_id] = record
        self.gateway.dispatch("INTERACTION_CREATE", payload, guild_id=record.guild_id)
        await self.gateway.flush()
        record.dispatched_at = time.monotonic()
        if record.ack_timeout is not None:
            # Wake waiters at the deadline so they can report the missed ack.
            asyncio.get_running_loop().call_later(record.ack_timeout + 0.01, self._changed)
        return record

    def _interaction_payload(
        self,
        interaction_id: int,
        token: str,
        interaction_type: int,
        data: dict[str, Any],
        guild: GuildRecord | None,
        channel: ChannelRecord,
        user: UserRecord,
        locale: str,
    ) -> dict[str, Any]:
        member: MemberRecord | None = None if guild is None else guild.member(user.id)
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": interaction_type,
            "token": token,
            "version": 1,
            "data": data,
            "channel_id": str(channel.id),
            "channel": interaction_channel_payload(self.state, channel, member),
            "locale": locale,
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
        }
        if guild is not None and member is not None:
            me = guild.member(self.bot_user.id)
            payload.update(
                guild_id=str(guild.id),
                guild={"id": str(guild.id), "locale": guild.preferred_locale, "features": []},
                guild_locale=guild.preferred_locale,
                member=member_payload(
                    member, permissions=channel_permissions(guild, channel, member)
                ),
                app_permissions=str(0 if me is None else channel_permissions(guild, channel, me)),
                authorizing_integration_owners={"0": str(guild.id)},
                context=0,
            )
        else:
            payload.update(
                user=user_payload(user),
                app_permissions=str(DM_PERMISSIONS),
                authorizing_integration_owners={"0": "0"},
                context=1,
            )
        return payload
