"""What the bot answers to interactions: callbacks, followups, webhook edits.

Discord's rules that bots trip over are kept: one initial response only (40060),
the acknowledgement deadline (10062), the first followup after a defer filling
in the deferred message, ephemeral messages never reaching the gateway.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import errors
from .components import check_modal
from .interaction_record import (
    APPLICATION_COMMAND,
    AUTOCOMPLETE,
    AUTOCOMPLETE_RESULT,
    CHANNEL_MESSAGE,
    DEFERRED_CHANNEL_MESSAGE,
    DEFERRED_UPDATE_MESSAGE,
    MESSAGE_COMPONENT,
    MODAL,
    MODAL_SUBMIT,
    UPDATE_MESSAGE,
    InteractionRecord,
)
from .messages import MessageHelpers, UploadedFile
from .payloads import message_payload, user_payload
from .state import (
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    MESSAGE_CHAT_INPUT_COMMAND,
    ChannelRecord,
    MessageRecord,
)


class InteractionResponses(MessageHelpers):
    _interactions: dict[int, InteractionRecord]

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
            check_modal(data)
        channel = self._channel(record.channel_id)
        if response_type == CHANNEL_MESSAGE:
            record.original = self._interaction_message(record, channel, data, files, loading=False)
        elif response_type == DEFERRED_CHANNEL_MESSAGE:
            record.original = self._interaction_message(record, channel, data, (), loading=True)
        elif response_type in (DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE):
            record.original = record.source_message
            if record.original is not None:
                record.edits_at_ack = len(record.original.edits)
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
