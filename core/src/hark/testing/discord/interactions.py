"""Interactions: slash commands, autocomplete, components and modals.

A test invokes something the way a user would in the Discord client; the server
sends INTERACTION_CREATE and then records what the bot answers through the
callback and webhook endpoints. ``InteractionRecord.wait_response`` gives the
message the user finally sees.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .base import ChannelLike, GuildLike, MessageLike, ServerCore, UserLike
from .messages import MessageHelpers, UploadedFile
from .options import OptionContext, build_command_options
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
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    MESSAGE_CHAT_INPUT_COMMAND,
    AppCommandRecord,
    ChannelRecord,
    GuildRecord,
    MemberRecord,
    MessageRecord,
    UserRecord,
)
from .waiters import Waiters

# Interaction types.
APPLICATION_COMMAND = 2
MESSAGE_COMPONENT = 3
AUTOCOMPLETE = 4
MODAL_SUBMIT = 5

# Interaction callback (response) types.
PONG = 1
CHANNEL_MESSAGE = 4
DEFERRED_CHANNEL_MESSAGE = 5
DEFERRED_UPDATE_MESSAGE = 6
UPDATE_MESSAGE = 7
AUTOCOMPLETE_RESULT = 8
MODAL = 9

ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024


class CommandNotAvailable(LookupError):
    """The invoking user could not run this command in the real Discord client."""


@dataclass(eq=False)
class InteractionRecord:
    id: int
    token: str
    type: int
    guild_id: int | None
    channel_id: int
    user: UserRecord
    command: AppCommandRecord | None
    payload: dict[str, Any]
    ack_timeout: float | None
    waiters: Waiters = field(repr=False)
    describe_failures: Callable[[], str] = field(repr=False)
    dispatched_at: float = 0.0  # time.monotonic() when sent on the gateway
    response_type: int | None = None
    callbacks: list[dict[str, Any]] = field(default_factory=list)  # callback bodies as sent
    original: MessageRecord | None = None
    followups: list[MessageRecord] = field(default_factory=list)
    choices: list[dict[str, Any]] | None = None  # autocomplete result
    modal: dict[str, Any] | None = None  # modal the bot opened
    source_message: MessageRecord | None = None  # for component interactions

    @property
    def acknowledged(self) -> bool:
        return self.response_type is not None

    @property
    def deferred(self) -> bool:
        return self.response_type in (DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE_MESSAGE)

    @property
    def ephemeral(self) -> bool:
        return self.original is not None and self.original.ephemeral

    @property
    def expired(self) -> bool:
        """Not acknowledged within the deadline: Discord shows "did not respond"."""
        if self.acknowledged or self.ack_timeout is None:
            return False
        return time.monotonic() > self.dispatched_at + self.ack_timeout

    async def wait_ack(self, timeout: float = 10.0) -> int:
        """Wait for the initial callback; returns the response type."""

        def acked() -> int | None:
            self._raise_if_expired()
            return self.response_type

        return await self.waiters.wait_for(acked, timeout=timeout, describe=self._describe)

    async def wait_response(self, timeout: float = 10.0) -> MessageRecord:
        """The message the user ends up seeing (after any deferral and edit/followup)."""

        def done() -> MessageRecord | None:
            self._raise_if_expired()
            if self.response_type == MODAL:
                raise AssertionError(
                    f"interaction {self.id} was answered with a modal: {self.modal}"
                )
            if self.response_type == AUTOCOMPLETE_RESULT:
                raise AssertionError(f"interaction {self.id} is an autocomplete, see .choices")
            message = self.original
            if message is None or message.loading:
                return None
            if self.response_type == DEFERRED_UPDATE_MESSAGE and not message.edits:
                return None  # acknowledged, but the component's message was not updated yet
            return message

        return await self.waiters.wait_for(done, timeout=timeout, describe=self._describe)

    async def wait_followup(self, index: int = 0, timeout: float = 10.0) -> MessageRecord:
        """The ``index``-th followup message (0 = first)."""
        return await self.waiters.wait_for(
            lambda: self.followups[index] if len(self.followups) > index else None,
            timeout=timeout,
            describe=self._describe,
        )

    def _raise_if_expired(self) -> None:
        if self.expired:
            raise AssertionError(
                f"interaction {self.id} was not acknowledged within {self.ack_timeout}s; "
                "Discord would show 'The application did not respond'"
            )

    def _describe(self) -> str:
        name = self.command.name if self.command else self.payload.get("data", {})
        return (
            f"the response to interaction {self.id} ({name}); response_type={self.response_type}, "
            f"original={self.original and self.original.content[:60]!r}; {self.describe_failures()}"
        )


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
        data["options"] = _focused_options(command, path[1:], options, focused)
        if command.guild_id is not None:
            data["guild_id"] = str(command.guild_id)
        record = await self._send_interaction(
            AUTOCOMPLETE, data, guild_rec, channel_rec, user, command=command
        )
        await record.wait_ack(timeout)
        return record.choices or []

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
        components = _modal_submission(modal.get("components") or [], values)
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
        component = _find_component(record.components, custom_id)
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

    # -- bot responses (called by the REST handlers) ---------------------------

    def _interaction_for_callback(self, interaction_id: int, token: str) -> InteractionRecord:
        record = self._interactions.get(interaction_id)
        if record is None or record.token != token or record.expired:
            raise errors.unknown_interaction()
        if record.acknowledged:
            raise errors.already_acknowledged()
        return record

    def _interaction_for_webhook(self, application_id: int, token: str) -> InteractionRecord:
        if application_id != self.application_id:
            raise errors.unknown_webhook()
        for record in self._interactions.values():
            if record.token == token:
                return record
        raise errors.unknown_webhook()

    def _interaction_callback(
        self, record: InteractionRecord, body: dict[str, Any], files: Sequence[UploadedFile]
    ) -> dict[str, Any]:
        """Apply an initial response; returns the ``with_response`` body."""
        response_type = int(body.get("type", 0))
        data = body.get("data") or {}
        allowed = {
            APPLICATION_COMMAND: {CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, MODAL},
            AUTOCOMPLETE: {AUTOCOMPLETE_RESULT},
            MESSAGE_COMPONENT: {
                CHANNEL_MESSAGE,
                DEFERRED_CHANNEL_MESSAGE,
                DEFERRED_UPDATE_MESSAGE,
                UPDATE_MESSAGE,
                MODAL,
            },
            MODAL_SUBMIT: {
                CHANNEL_MESSAGE,
                DEFERRED_CHANNEL_MESSAGE,
                DEFERRED_UPDATE_MESSAGE,
                UPDATE_MESSAGE,
            },
        }[record.type]
        if response_type not in allowed:
            raise errors.APIError(400, 40004, f"Invalid interaction response type {response_type}")
        if response_type == MODAL:
            _check_modal(data)
        channel = self._channel(record.channel_id)
        if response_type == CHANNEL_MESSAGE:
            record.original = self._interaction_message(record, channel, data, files, loading=False)
        elif response_type == DEFERRED_CHANNEL_MESSAGE:
            record.original = self._interaction_message(record, channel, data, (), loading=True)
        elif response_type in (DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE):
            record.original = record.source_message
            if response_type == UPDATE_MESSAGE and record.original is not None:
                self._edit_message(record.original, data, files)
        elif response_type == AUTOCOMPLETE_RESULT:
            record.choices = list(data.get("choices") or [])
        elif response_type == MODAL:
            record.modal = data
        record.response_type = response_type
        record.callbacks.append(body)
        self._changed()
        return self._callback_response(record, response_type)

    def _callback_response(self, record: InteractionRecord, response_type: int) -> dict[str, Any]:
        interaction: dict[str, Any] = {"id": str(record.id), "type": record.type}
        resource: dict[str, Any] = {"type": response_type}
        message = record.original
        if message is not None and response_type in (
            CHANNEL_MESSAGE,
            DEFERRED_CHANNEL_MESSAGE,
            UPDATE_MESSAGE,
        ):
            interaction.update(
                response_message_id=str(message.id),
                response_message_loading=message.loading,
                response_message_ephemeral=message.ephemeral,
            )
            if response_type in (CHANNEL_MESSAGE, UPDATE_MESSAGE):
                resource["message"] = message_payload(self.state, message)
        return {"interaction": interaction, "resource": resource}

    def _interaction_message(
        self,
        record: InteractionRecord,
        channel: ChannelRecord,
        data: dict[str, Any],
        files: Sequence[UploadedFile],
        *,
        loading: bool,
    ) -> MessageRecord:
        body = dict(data)
        flags = int(body.pop("flags", 0) or 0)
        extra = flags & FLAG_EPHEMERAL
        if loading:
            extra |= FLAG_LOADING
            body = {}
        body["flags"] = flags & ~FLAG_EPHEMERAL
        metadata: dict[str, Any] = {
            "id": str(record.id),
            "type": record.type,
            "user": user_payload(record.user),
            "authorizing_integration_owners": record.payload["authorizing_integration_owners"],
        }
        if record.command is not None:
            metadata["name"] = record.command.name
            metadata["command_type"] = record.command.type
        return self._create_message(
            channel,
            self.bot_user,
            body,
            files,
            message_type=MESSAGE_CHAT_INPUT_COMMAND,
            extra_flags=extra,
            webhook_id=self.application_id,
            interaction=metadata,
        )

    def _interaction_followup(
        self, record: InteractionRecord, body: dict[str, Any], files: Sequence[UploadedFile]
    ) -> MessageRecord:
        if not record.acknowledged:
            raise errors.unknown_webhook()
        original = record.original
        if (
            record.response_type == DEFERRED_CHANNEL_MESSAGE
            and original is not None
            and original.loading
        ):
            # Discord turns the first followup after a defer into the deferred message.
            message = self._edit_message(original, body, files)
        else:
            channel = self._channel(record.channel_id)
            message = self._interaction_message(record, channel, body, files, loading=False)
        record.followups.append(message)
        self._changed()
        return message

    def _interaction_owned_message(
        self, record: InteractionRecord, message_id: str
    ) -> MessageRecord:
        if message_id == "@original":
            if record.original is None or record.original.deleted:
                raise errors.unknown_message()
            return record.original
        for message in [record.original, *record.followups]:
            if message is not None and str(message.id) == message_id and not message.deleted:
                return message
        raise errors.unknown_message()


def _focused_options(
    command: AppCommandRecord, path: Sequence[str], values: Mapping[str, Any], focused: str
) -> list[dict[str, Any]]:
    schema = command.options
    nesting: list[tuple[int, str]] = []
    for part in path:
        group = next((o for o in schema if o.get("name") == part), None)
        if group is None:
            raise LookupError(f"/{command.name} has no subcommand {part!r}")
        nesting.append((int(group["type"]), part))
        schema = group.get("options") or []
    by_name = {o["name"]: o for o in schema}
    if focused not in by_name:
        raise LookupError(f"/{command.name} has no option {focused!r}")
    if not by_name[focused].get("autocomplete"):
        raise AssertionError(f"option {focused!r} of /{command.name} has no autocomplete")
    options: list[dict[str, Any]] = []
    for name, value in values.items():
        if name not in by_name:
            raise LookupError(f"/{command.name} has no option {name!r}")
        option: dict[str, Any] = {"type": by_name[name]["type"], "name": name, "value": value}
        if name == focused:
            option["focused"] = True
        options.append(option)
    if focused not in values:
        options.append(
            {"type": by_name[focused]["type"], "name": focused, "value": "", "focused": True}
        )
    for option_type, name in reversed(nesting):
        options = [{"type": option_type, "name": name, "options": options}]
    return options


def _find_component(components: list[dict[str, Any]], custom_id: str) -> dict[str, Any] | None:
    for component in components:
        if component.get("custom_id") == custom_id:
            return component
        children = list(component.get("components") or [])
        for key in ("accessory", "component"):
            if isinstance(component.get(key), dict):
                children.append(component[key])
        found = _find_component(children, custom_id)
        if found is not None:
            return found
    return None


def _check_modal(data: dict[str, Any]) -> None:
    if not data.get("custom_id") or not data.get("title"):
        raise errors.field_error("data", "BASE_TYPE_REQUIRED", "custom_id and title are required")
    if not data.get("components"):
        raise errors.field_error("data.components", "BASE_TYPE_REQUIRED", "This field is required")


def _modal_submission(
    components: list[dict[str, Any]], values: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Mirror the modal layout with the user's input (action rows or labels)."""
    result: list[dict[str, Any]] = []
    for component in components:
        kind = component.get("type")
        if kind == 1:  # action row with text inputs
            result.append(
                {
                    "type": 1,
                    "components": _modal_submission(component.get("components") or [], values),
                }
            )
        elif kind == 18:  # label wrapping one component
            inner = _modal_submission([component["component"]], values)
            result.append({"type": 18, "id": component.get("id", 0), "component": inner[0]})
        elif kind == 4:  # text input
            custom_id = component["custom_id"]
            if component.get("required", True) and not values.get(custom_id):
                raise ValueError(f"modal text input {custom_id!r} is required")
            result.append(
                {
                    "type": 4,
                    "id": component.get("id", 0),
                    "custom_id": custom_id,
                    "value": values.get(custom_id, ""),
                }
            )
        elif kind in (3, 5, 6, 7, 8):  # selects inside labels
            custom_id = component["custom_id"]
            picked = values.get(custom_id, [])
            result.append(
                {
                    "type": kind,
                    "id": component.get("id", 0),
                    "custom_id": custom_id,
                    "values": list(picked) if not isinstance(picked, str) else [picked],
                }
            )
        else:
            result.append({"type": kind, "id": component.get("id", 0)})
    return result
