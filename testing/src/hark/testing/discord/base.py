"""Shared core of ``FakeDiscord``: attributes and lookups the helper mixins use.

``FakeDiscord`` is assembled from mixins (guilds, messages, interactions) so each
area stays in its own small module; this base declares what they share.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import quote

from .gateway import Gateway
from .media import guess_content_type, image_size
from .snowflakes import SnowflakeGenerator
from .state import (
    AttachmentRecord,
    ChannelRecord,
    FakeState,
    GuildRecord,
    MemberRecord,
    MessageRecord,
    UserRecord,
)
from .voice import VoiceStates
from .waiters import Waiters

if TYPE_CHECKING:
    from .voice_server import VoiceServer

UserLike = UserRecord | MemberRecord | int
ChannelLike = ChannelRecord | int
GuildLike = GuildRecord | int
MessageLike = MessageRecord | int


class RequestLog(NamedTuple):
    method: str
    path: str
    status: int


class ServerCore:
    state: FakeState
    ids: SnowflakeGenerator
    gateway: Gateway
    voice: VoiceStates
    voice_server: VoiceServer
    bot_user: UserRecord
    owner: UserRecord
    application_id: int
    requests: list[RequestLog]
    _waiters: Waiters
    _http_base: str
    _attachments: dict[int, AttachmentRecord]
    _message_seq: int

    def _changed(self) -> None:
        """Wake every waiter: call after any state change."""
        self._waiters.notify()

    # -- lookups that accept records or ids --------------------------------

    def _guild(self, guild: GuildLike) -> GuildRecord:
        guild_id = guild if isinstance(guild, int) else guild.id
        found = self.state.guilds.get(guild_id)
        if found is None:
            raise LookupError(f"unknown guild {guild_id}")
        return found

    def _channel(self, channel: ChannelLike) -> ChannelRecord:
        channel_id = channel if isinstance(channel, int) else channel.id
        found = self.state.channels.get(channel_id)
        if found is None:
            raise LookupError(f"unknown channel {channel_id}")
        return found

    def _user(self, user: UserLike) -> UserRecord:
        if isinstance(user, MemberRecord):
            return user.user
        user_id = user if isinstance(user, int) else user.id
        found = self.state.users.get(user_id)
        if found is None:
            raise LookupError(f"unknown user {user_id}")
        return found

    def _message(self, message: MessageLike) -> MessageRecord:
        message_id = message if isinstance(message, int) else message.id
        found = self.state.messages.get(message_id)
        if found is None:
            raise LookupError(f"unknown message {message_id}")
        return found

    # -- attachments ---------------------------------------------------------

    def _store_attachment(
        self,
        filename: str,
        data: bytes,
        *,
        content_type: str | None = None,
        description: str | None = None,
        ephemeral: bool = False,
    ) -> AttachmentRecord:
        attachment_id = self.ids.next()
        path = f"attachments/{attachment_id}/{quote(filename)}"
        content_type = guess_content_type(filename, content_type)
        size = image_size(data) if (content_type or "").startswith("image/") else None
        record = AttachmentRecord(
            id=attachment_id,
            filename=filename,
            data=data,
            # Discord's CDN and media proxy; both serve the file here.
            url=f"{self._http_base}/{path}",
            proxy_url=f"{self._http_base}/media/{path}",
            content_type=content_type,
            description=description,
            ephemeral=ephemeral,
            width=size[0] if size else None,
            height=size[1] if size else None,
        )
        self._attachments[attachment_id] = record
        return record

    # -- diagnostics ---------------------------------------------------------

    def _recent_failures(self, limit: int = 5) -> str:
        failed = [r for r in self.requests if r.status >= 400][-limit:]
        if not failed:
            return "no failed REST requests"
        return "recent failed REST requests: " + ", ".join(
            f"{r.method} {r.path} -> {r.status}" for r in failed
        )
