"""What the server knows about one interaction, and how a test waits on it.

A test invokes something the way a user would in the Discord client; the server
sends INTERACTION_CREATE and records what the bot answers through the callback
and webhook endpoints. ``InteractionRecord.wait_response`` gives the message the
user finally sees.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .state import AppCommandRecord, MessageRecord, UserRecord
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
    payload: dict[str, Any] = field(repr=False)
    ack_timeout: float | None
    waiters: Waiters = field(repr=False)
    describe_failures: Callable[[], str] = field(repr=False)
    dispatched_at: float = 0.0  # time.monotonic() when sent on the gateway
    response_type: int | None = None
    callbacks: list[dict[str, Any]] = field(default_factory=list, repr=False)  # as sent
    original: MessageRecord | None = None
    followups: list[MessageRecord] = field(default_factory=list)
    choices: list[dict[str, Any]] | None = None  # autocomplete result
    modal: dict[str, Any] | None = None  # modal the bot opened
    source_message: MessageRecord | None = None  # for component interactions
    edits_at_ack: int = 0  # edits the source message had when the bot acknowledged

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
            if (
                self.response_type == DEFERRED_UPDATE_MESSAGE
                and len(message.edits) <= self.edits_at_ack
            ):
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
