"""Request validation that mirrors Discord's limits.

Only limits that bots realistically trip over are checked, but those are
checked strictly so that tests fail the way production would.
"""

from __future__ import annotations

import re
from typing import Any

from . import errors

MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_EMBED_TOTAL = 6000
MAX_ATTACHMENTS = 10
MAX_UPLOAD_BYTES = 10 * 1024 * 1024

_EMBED_LIMITS = {"title": 256, "description": 4096}
_COMMAND_NAME = re.compile(r"[-_'\w]{1,32}")


def validate_message(body: dict[str, Any], *, file_count: int, require_content: bool) -> None:
    """Check a create/edit message body (JSON or ``payload_json``)."""
    content = body.get("content")
    if content is not None:
        if not isinstance(content, str):
            raise errors.field_error("content", "BASE_TYPE_BAD_TYPE", "Must be a string.")
        if len(content) > MAX_CONTENT:
            raise errors.field_error(
                "content", "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_CONTENT} or fewer in length."
            )
    embeds = body.get("embeds") or []
    validate_embeds(embeds)
    if file_count > MAX_ATTACHMENTS:
        raise errors.field_error("files", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
    if require_content:
        has_something = (
            (content or "").strip()
            or embeds
            or file_count
            or body.get("sticker_ids")
            or body.get("poll")
            or body.get("components")
        )
        if not has_something:
            raise errors.empty_message()


def validate_embeds(embeds: list[Any]) -> None:
    if len(embeds) > MAX_EMBEDS:
        raise errors.field_error("embeds", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
    total = 0
    for index, embed in enumerate(embeds):
        where = f"embeds.{index}"
        for key, limit in _EMBED_LIMITS.items():
            value = embed.get(key) or ""
            total += len(value)
            if len(value) > limit:
                raise errors.field_error(
                    f"{where}.{key}", "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length."
                )
        fields = embed.get("fields") or []
        if len(fields) > 25:
            raise errors.field_error(
                f"{where}.fields", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
            )
        for f_index, embed_field in enumerate(fields):
            for key, limit in (("name", 256), ("value", 1024)):
                value = str(embed_field.get(key) or "")
                total += len(value)
                if not value:
                    raise errors.field_error(
                        f"{where}.fields.{f_index}.{key}",
                        "BASE_TYPE_REQUIRED",
                        "This field is required",
                    )
                if len(value) > limit:
                    raise errors.field_error(
                        f"{where}.fields.{f_index}.{key}",
                        "BASE_TYPE_MAX_LENGTH",
                        f"Must be {limit} or fewer in length.",
                    )
        for key, sub, limit in (("footer", "text", 2048), ("author", "name", 256)):
            value = (embed.get(key) or {}).get(sub) or ""
            total += len(value)
            if len(value) > limit:
                raise errors.field_error(
                    f"{where}.{key}.{sub}",
                    "BASE_TYPE_MAX_LENGTH",
                    f"Must be {limit} or fewer in length.",
                )
    if total > MAX_EMBED_TOTAL:
        raise errors.field_error(
            "embeds", "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000"
        )


def validate_commands(commands: Any) -> None:
    """Check a bulk-overwrite body the way Discord does before storing it."""
    if not isinstance(commands, list):
        raise errors.invalid_form_body({"_errors": [{"code": "BASE_TYPE_ARRAY", "message": "?"}]})
    if len(commands) > 100:
        raise errors.field_error("_", "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.")
    seen: set[tuple[str, int]] = set()
    for index, command in enumerate(commands):
        validate_command(command, f"{index}")
        key = (command["name"], int(command.get("type", 1)))
        if key in seen:
            raise errors.field_error(
                f"{index}.name",
                "APPLICATION_COMMANDS_DUPLICATE_NAME",
                f"Application command names must be unique (duplicate: {key[0]!r})",
            )
        seen.add(key)


def validate_command(command: dict[str, Any], where: str) -> None:
    command_type = int(command.get("type", 1))
    name = command.get("name")
    if not isinstance(name, str):
        raise errors.field_error(f"{where}.name", "BASE_TYPE_REQUIRED", "This field is required")
    if command_type == 1:
        _check_name(name, f"{where}.name")
        _check_description(command.get("description"), f"{where}.description")
        _check_options(command.get("options") or [], f"{where}.options", depth=0)
    elif not 1 <= len(name) <= 32:
        raise errors.field_error(f"{where}.name", "BASE_TYPE_BAD_LENGTH", "Must be 1-32 in length.")


def _check_name(name: str, where: str) -> None:
    if not _COMMAND_NAME.fullmatch(name) or name != name.lower():
        raise errors.field_error(
            where, "APPLICATION_COMMAND_INVALID_NAME", f"Command name is invalid: {name!r}"
        )


def _check_description(description: Any, where: str) -> None:
    if not isinstance(description, str) or not 1 <= len(description) <= 100:
        raise errors.field_error(
            where, "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
        )


def _check_options(options: list[dict[str, Any]], where: str, *, depth: int) -> None:
    if len(options) > 25:
        raise errors.field_error(where, "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
    names: set[str] = set()
    seen_optional = False
    for index, option in enumerate(options):
        here = f"{where}.{index}"
        name = str(option.get("name", ""))
        _check_name(name, f"{here}.name")
        _check_description(option.get("description"), f"{here}.description")
        if name in names:
            raise errors.field_error(
                f"{here}.name", "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS", "Duplicate name."
            )
        names.add(name)
        option_type = int(option.get("type", 0))
        if option_type in (1, 2):
            # Subcommand groups hold subcommands; subcommands hold plain options.
            if (option_type == 2 and depth > 0) or (option_type == 1 and depth > 1):
                raise errors.field_error(
                    f"{here}.type", "APPLICATION_COMMAND_SUBCOMMAND_NESTING", "Invalid nesting."
                )
            _check_options(option.get("options") or [], f"{here}.options", depth=depth + 1)
            continue
        if len(option.get("choices") or []) > 25:
            raise errors.field_error(
                f"{here}.choices", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
            )
        if option.get("required"):
            if seen_optional:
                raise errors.field_error(
                    f"{here}.required",
                    "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                    "Required options must be placed before non-required options",
                )
        else:
            seen_optional = True
