"""Build a slash command's interaction ``options`` + ``resolved`` from plain values.

Values are checked against the stored command's option schema the way the
Discord client enforces it (known names, required options, types, choices,
ranges), so a test cannot send something a real user could not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .payloads import attachment_payload, member_payload, role_payload, user_payload
from .permissions import channel_permissions
from .state import (
    AppCommandRecord,
    AttachmentRecord,
    ChannelRecord,
    FakeState,
    GuildRecord,
    MemberRecord,
    RoleRecord,
    UserRecord,
)

SUB_COMMAND = 1
SUB_COMMAND_GROUP = 2
STRING = 3
INTEGER = 4
BOOLEAN = 5
USER = 6
CHANNEL = 7
ROLE = 8
MENTIONABLE = 9
NUMBER = 10
ATTACHMENT = 11

JSON = dict[str, Any]
MakeAttachment = Callable[[str, bytes], AttachmentRecord]


@dataclass
class OptionContext:
    state: FakeState
    guild: GuildRecord | None
    make_attachment: MakeAttachment
    resolved: dict[str, dict[str, JSON]] = field(default_factory=dict)

    def resolve(self, kind: str, key: int, data: JSON) -> None:
        self.resolved.setdefault(kind, {})[str(key)] = data


def build_command_options(
    ctx: OptionContext,
    command: AppCommandRecord,
    path: Sequence[str],
    values: Mapping[str, Any],
) -> list[JSON]:
    """Options for ``command`` invoked as ``/name path...`` with ``values``."""
    schema = command.options
    nesting: list[tuple[int, str]] = []
    for part in path:
        group = next((o for o in schema if o.get("name") == part and o.get("type") in (1, 2)), None)
        if group is None:
            known = [o["name"] for o in schema if o.get("type") in (1, 2)]
            raise LookupError(f"/{command.name} has no subcommand {part!r} (known: {known})")
        nesting.append((int(group["type"]), part))
        schema = group.get("options") or []
    subcommands = [o["name"] for o in schema if o.get("type") in (1, 2)]
    if subcommands:
        raise LookupError(
            f"/{' '.join([command.name, *path])} needs a subcommand, one of {subcommands}"
        )
    options = _typed_values(ctx, schema, values, f"/{' '.join([command.name, *path])}")
    for option_type, name in reversed(nesting):
        options = [{"type": option_type, "name": name, "options": options}]
    return options


def _typed_values(
    ctx: OptionContext, schema: list[JSON], values: Mapping[str, Any], where: str
) -> list[JSON]:
    by_name = {o["name"]: o for o in schema}
    for name in values:
        if name not in by_name:
            raise LookupError(f"{where} has no option {name!r} (known: {sorted(by_name)})")
    result: list[JSON] = []
    for option in schema:
        name = option["name"]
        if name not in values or values[name] is None:
            if option.get("required"):
                raise ValueError(f"{where}: required option {name!r} is missing")
            continue
        option_type = int(option["type"])
        value = _convert(ctx, option, values[name], f"{where} {name}")
        result.append({"type": option_type, "name": name, "value": value})
    return result


def _convert(ctx: OptionContext, option: JSON, value: Any, where: str) -> Any:
    option_type = int(option["type"])
    choices = option.get("choices") or []
    if choices:
        value = _pick_choice(choices, value, where)
    if option_type == STRING:
        if not isinstance(value, str):
            raise TypeError(f"{where}: expected a string, got {value!r}")
        _check_range(
            len(value), option.get("min_length"), option.get("max_length"), where, "length"
        )
        return value
    if option_type == INTEGER:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{where}: expected an integer, got {value!r}")
        _check_range(value, option.get("min_value"), option.get("max_value"), where, "value")
        return value
    if option_type == NUMBER:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{where}: expected a number, got {value!r}")
        _check_range(value, option.get("min_value"), option.get("max_value"), where, "value")
        return value
    if option_type == BOOLEAN:
        if not isinstance(value, bool):
            raise TypeError(f"{where}: expected a bool, got {value!r}")
        return value
    if option_type in (USER, MENTIONABLE) and isinstance(value, UserRecord | MemberRecord):
        return _resolve_user(ctx, value)
    if option_type in (ROLE, MENTIONABLE) and isinstance(value, RoleRecord):
        ctx.resolve("roles", value.id, role_payload(value))
        return str(value.id)
    if option_type == CHANNEL and isinstance(value, ChannelRecord):
        allowed = option.get("channel_types")
        if allowed and value.type not in allowed:
            raise ValueError(f"{where}: channel type {value.type} not in {allowed}")
        ctx.resolve("channels", value.id, _resolved_channel(ctx, value))
        return str(value.id)
    if option_type == ATTACHMENT:
        attachment = _as_attachment(ctx, value, where)
        ctx.resolve("attachments", attachment.id, attachment_payload(attachment))
        return str(attachment.id)
    if isinstance(value, int) and option_type in (USER, CHANNEL, ROLE, MENTIONABLE):
        return _resolve_id(ctx, option_type, value, where)
    raise TypeError(f"{where}: unsupported value {value!r} for option type {option_type}")


def _pick_choice(choices: list[JSON], value: Any, where: str) -> Any:
    for choice in choices:
        if choice["value"] == value:
            return value
    for choice in choices:
        if choice["name"] == value:
            return choice["value"]  # allow picking a choice by its display name
    raise ValueError(f"{where}: {value!r} is not one of {[c['value'] for c in choices]}")


def _check_range(value: float, low: Any, high: Any, where: str, what: str) -> None:
    if low is not None and value < low:
        raise ValueError(f"{where}: {what} {value} is below the minimum {low}")
    if high is not None and value > high:
        raise ValueError(f"{where}: {what} {value} is above the maximum {high}")


def build_target_user(ctx: OptionContext, user: UserRecord) -> str:
    """Resolve the target of a user context menu; returns its id."""
    return _resolve_user(ctx, user)


def _resolve_user(ctx: OptionContext, value: UserRecord | MemberRecord) -> str:
    user = value.user if isinstance(value, MemberRecord) else value
    ctx.resolve("users", user.id, user_payload(user))
    member = ctx.guild.member(user.id) if ctx.guild is not None else None
    if member is not None:
        data = member_payload(member, with_user=False)
        data["permissions"] = "0"
        ctx.resolve("members", user.id, data)
    return str(user.id)


def _resolve_id(ctx: OptionContext, option_type: int, value: int, where: str) -> str:
    if option_type in (USER, MENTIONABLE) and value in ctx.state.users:
        return _resolve_user(ctx, ctx.state.users[value])
    if option_type in (ROLE, MENTIONABLE) and ctx.guild is not None and value in ctx.guild.roles:
        ctx.resolve("roles", value, role_payload(ctx.guild.roles[value]))
        return str(value)
    if option_type == CHANNEL and value in ctx.state.channels:
        ctx.resolve("channels", value, _resolved_channel(ctx, ctx.state.channels[value]))
        return str(value)
    raise LookupError(f"{where}: no user/role/channel with id {value}")


def _resolved_channel(ctx: OptionContext, channel: ChannelRecord) -> JSON:
    perms = 0
    if ctx.guild is not None:
        me = ctx.guild.member(ctx.state.bot_user_id)
        if me is not None:
            perms = channel_permissions(ctx.guild, channel, me)
    return {
        "id": str(channel.id),
        "name": channel.name,
        "type": channel.type,
        "permissions": str(perms),
        "parent_id": None if channel.parent_id is None else str(channel.parent_id),
        "position": channel.position,
        "nsfw": channel.nsfw,
        "topic": channel.topic,
        "rate_limit_per_user": channel.rate_limit_per_user,
        "last_message_id": None,
        "flags": 0,
    }


def _as_attachment(ctx: OptionContext, value: Any, where: str) -> AttachmentRecord:
    if isinstance(value, AttachmentRecord):
        return value
    if isinstance(value, tuple) and len(value) == 2:
        filename, data = value
        return ctx.make_attachment(str(filename), bytes(data))
    raise TypeError(f"{where}: pass an attachment as (filename, bytes), got {value!r}")
