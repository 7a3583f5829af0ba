"""Compute a message's ``mentions`` / ``mention_roles`` / ``mention_everyone``.

Discord parses ``<@id>``, ``<@!id>``, ``<@&id>``, ``@everyone`` and ``@here`` from
the content and then filters them through ``allowed_mentions`` (which defaults to
"everything" when omitted) and the author's permissions. Tests use these
computed fields to catch bots that ping more than they should.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .state import FakeState, GuildRecord, MessageRecord, UserRecord

USER_MENTION = re.compile(r"<@!?(\d+)>")
ROLE_MENTION = re.compile(r"<@&(\d+)>")
EVERYONE_MENTION = re.compile(r"@(?:everyone|here)\b")

PARSE_TYPES = frozenset({"users", "roles", "everyone"})


@dataclass
class Mentions:
    users: list[UserRecord] = field(default_factory=list)
    roles: list[int] = field(default_factory=list)
    everyone: bool = False


def validate_allowed_mentions(allowed: Any) -> None:
    """Reject malformed ``allowed_mentions`` with the 50035 error Discord sends."""
    if allowed is None:
        return
    if not isinstance(allowed, dict):
        raise errors.field_error("allowed_mentions", "MODEL_TYPE_CONVERT", "Must be an object.")
    parse = allowed.get("parse") or []
    for kind in parse:
        if kind not in PARSE_TYPES:
            raise errors.field_error(
                "allowed_mentions.parse",
                "BASE_TYPE_CHOICES",
                f"Value must be one of {PARSE_TYPES}.",
            )
    for kind in ("users", "roles"):
        if kind in parse and allowed.get(kind):
            raise errors.field_error(
                "allowed_mentions",
                "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                f"parse:[{kind}] and {kind}: [ids...] are mutually exclusive.",
            )
        if len(allowed.get(kind) or []) > 100:
            raise errors.field_error(
                f"allowed_mentions.{kind}", "BASE_TYPE_MAX_LENGTH", "Too many ids."
            )


def compute_mentions(
    state: FakeState,
    *,
    guild: GuildRecord | None,
    content: str,
    allowed: dict[str, Any] | None,
    can_mention_everyone: bool,
    replied_to: MessageRecord | None,
    author_id: int,
) -> Mentions:
    if allowed is None:
        parse = set(PARSE_TYPES)
        allowed_users: set[int] = set()
        allowed_roles: set[int] = set()
        replied_user = True  # Discord pings the replied-to author unless told not to
    else:
        parse = set(allowed.get("parse") or [])
        allowed_users = {int(x) for x in allowed.get("users") or []}
        allowed_roles = {int(x) for x in allowed.get("roles") or []}
        replied_user = bool(allowed.get("replied_user", False))

    result = Mentions()
    seen: set[int] = set()
    for match in USER_MENTION.finditer(content):
        user_id = int(match.group(1))
        user = state.users.get(user_id)
        if user is None or user_id in seen:
            continue
        if "users" in parse or user_id in allowed_users:
            seen.add(user_id)
            result.users.append(user)

    if (
        replied_user
        and replied_to is not None
        and replied_to.author.id not in seen
        and replied_to.author.id != author_id
    ):
        result.users.append(replied_to.author)

    if guild is not None:
        for match in ROLE_MENTION.finditer(content):
            role = guild.roles.get(int(match.group(1)))
            if role is None or role.id in result.roles:
                continue
            pingable = role.mentionable or can_mention_everyone
            if pingable and ("roles" in parse or role.id in allowed_roles):
                result.roles.append(role.id)
        result.everyone = (
            "everyone" in parse and can_mention_everyone and bool(EVERYONE_MENTION.search(content))
        )
    return result
