"""Threads and forum posts, as Discord has them.

A thread is a channel of its own (type 11 public, 12 private) with a ``parent_id``:
messages in it carry the thread's id as ``channel_id``. One started from a message
has that message's id; one started without, in a text channel, leaves a "thread
created" system message (type 18) in the parent. A forum post is a public thread of
a forum channel (type 15) whose first message, posted with it, has the thread's id.
Threads have their parent's permissions, sending in them takes
SEND_MESSAGES_IN_THREADS, and a private one is seen by its members (and those who
may manage threads) only. Creating one dispatches THREAD_CREATE
(``newly_created``) to whoever can see it; GUILD_CREATE lists the active ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import errors
from . import gateway as gw
from .base import ChannelLike, GuildLike, MessageLike, ServerCore, UserLike
from .gateway import GatewaySession
from .messages import UploadedFile
from .payloads import thread_payload
from .permissions import (
    CREATE_PRIVATE_THREADS,
    CREATE_PUBLIC_THREADS,
    SEND_MESSAGES,
    VIEW_CHANNEL,
    channel_permissions,
    has,
)
from .snowflakes import iso_timestamp
from .state import (
    ANNOUNCEMENT_THREAD,
    FLAG_HAS_THREAD,
    GUILD_ANNOUNCEMENT,
    GUILD_FORUM,
    GUILD_MEDIA,
    GUILD_TEXT,
    MESSAGE_THREAD_CREATED,
    PRIVATE_THREAD,
    PUBLIC_THREAD,
    ChannelRecord,
    MessageRecord,
    UserRecord,
)

_ARCHIVE_DURATIONS = (60, 1440, 4320, 10080)


class ThreadHelpers(ServerCore):
    # From the other mixins of FakeDiscord.
    _create_message: Any
    _create_channel: Any

    # -- test helpers --------------------------------------------------------

    def create_forum_channel(
        self,
        guild: GuildLike,
        name: str,
        *,
        topic: str | None = None,
        category: ChannelRecord | None = None,
        overwrites: dict[Any, tuple[int, int]] | None = None,
        media: bool = False,
    ) -> ChannelRecord:
        """A forum (or media) channel: its posts are threads (:meth:`create_forum_post`)."""
        return self._create_channel(
            guild,
            name,
            GUILD_MEDIA if media else GUILD_FORUM,
            category=category,
            overwrites=overwrites,
            topic=topic,
        )

    async def create_thread(
        self,
        channel: ChannelLike,
        author: UserLike,
        name: str,
        *,
        message: MessageLike | None = None,
        private: bool = False,
    ) -> ChannelRecord:
        """A member starts a thread in ``channel``, from ``message`` or on its own."""
        parent = self._channel(channel)
        user = self._user(author)
        self._check_user_can(
            parent, user, CREATE_PRIVATE_THREADS if private else CREATE_PUBLIC_THREADS
        )
        thread = self._start_thread(
            parent,
            user,
            {"name": name, "type": PRIVATE_THREAD if private else PUBLIC_THREAD},
            message=None if message is None else self._message(message),
        )
        await self.gateway.flush()
        return thread

    async def create_forum_post(
        self,
        forum: ChannelLike,
        author: UserLike,
        title: str,
        content: str = "",
        *,
        files: Sequence[tuple[str, bytes] | tuple[str, bytes, str]] = (),
        embeds: Sequence[dict[str, Any]] | None = None,
    ) -> tuple[ChannelRecord, MessageRecord]:
        """A member posts in a forum: the post (a thread) and its first message."""
        parent = self._channel(forum)
        user = self._user(author)
        self._check_user_can(parent, user, SEND_MESSAGES)
        body: dict[str, Any] = {"name": title, "message": {"content": content}}
        if embeds:
            body["message"]["embeds"] = list(embeds)
        uploads = [
            UploadedFile(f[0], f[1], f[2] if len(f) > 2 else None, n)  # type: ignore[misc]
            for n, f in enumerate(files)
        ]
        thread, message = self._create_forum_post(parent, user, body, uploads)
        await self.gateway.flush()
        return thread, message

    def threads(self, channel: ChannelLike) -> list[ChannelRecord]:
        """The threads (or forum posts) of ``channel``, oldest first."""
        parent = self._channel(channel)
        guild = self.state.guild_of(parent)
        if guild is None:
            return []
        return [t for t in guild.threads.values() if t.parent_id == parent.id]

    # -- core operations (REST handlers too) -----------------------------------

    def _start_thread(
        self,
        parent: ChannelRecord,
        owner: UserRecord,
        body: dict[str, Any],
        *,
        message: MessageRecord | None = None,
    ) -> ChannelRecord:
        name = body.get("name")
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 100:
            raise errors.field_error(
                "name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
            )
        archive = int(body.get("auto_archive_duration") or 1440)
        if archive not in _ARCHIVE_DURATIONS:
            raise errors.field_error(
                "auto_archive_duration",
                "BASE_TYPE_CHOICES",
                "Value must be one of (60, 1440, 4320, 10080).",
            )
        if parent.type not in (GUILD_TEXT, GUILD_ANNOUNCEMENT):
            raise errors.APIError(400, 50024, "Cannot execute action on this channel type")
        if message is not None:
            if message.channel_id != parent.id or message.deleted:
                raise errors.unknown_message()
            if message.thread_id is not None:
                raise errors.APIError(
                    400, 160004, "A thread has already been created for this message"
                )
            thread_type = (
                ANNOUNCEMENT_THREAD if parent.type == GUILD_ANNOUNCEMENT else PUBLIC_THREAD
            )
            thread_id = message.id  # a thread started from a message has its id
        else:
            thread_type = int(body.get("type") or PRIVATE_THREAD)
            if thread_type not in (PUBLIC_THREAD, PRIVATE_THREAD):
                raise errors.field_error("type", "BASE_TYPE_CHOICES", "Value must be 11 or 12.")
            thread_id = self.ids.next()
        thread = self._add_thread(parent, owner, name.strip(), thread_id, thread_type, archive)
        if message is not None:
            message.thread_id = thread.id
            message.flags |= FLAG_HAS_THREAD
        elif thread_type == PUBLIC_THREAD:
            # The system message in the parent that points at the new thread.
            self._create_message(
                parent,
                owner,
                {"content": thread.name},
                [],
                message_type=MESSAGE_THREAD_CREATED,
                reference={
                    "channel_id": str(thread.id),
                    "guild_id": str(thread.guild_id),
                },
            )
        return thread

    def _create_forum_post(
        self,
        forum: ChannelRecord,
        owner: UserRecord,
        body: dict[str, Any],
        files: Sequence[UploadedFile],
    ) -> tuple[ChannelRecord, MessageRecord]:
        if not forum.is_forum:
            raise errors.APIError(400, 50024, "Cannot execute action on this channel type")
        name = body.get("name")
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 100:
            raise errors.field_error(
                "name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
            )
        first = body.get("message")
        if not isinstance(first, dict):
            raise errors.field_error("message", "BASE_TYPE_REQUIRED", "This field is required")
        archive = int(body.get("auto_archive_duration") or 1440)
        thread_id = self.ids.next()
        thread = self._add_thread(forum, owner, name.strip(), thread_id, PUBLIC_THREAD, archive)
        # The post's first message has the thread's id.
        message = self._create_message(thread, owner, first, files, message_id=thread.id)
        return thread, message

    def _add_thread(
        self,
        parent: ChannelRecord,
        owner: UserRecord,
        name: str,
        thread_id: int,
        thread_type: int,
        archive: int,
    ) -> ChannelRecord:
        guild = self.state.guild_of(parent)
        if guild is None:
            raise errors.APIError(400, 50003, "Cannot execute action on a DM channel")
        thread = ChannelRecord(
            id=thread_id,
            type=thread_type,
            name=name,
            guild_id=guild.id,
            parent_id=parent.id,
            owner_id=owner.id,
            auto_archive_duration=archive,
            created_at=iso_timestamp(),
            member_ids=[owner.id],
        )
        guild.threads[thread.id] = thread
        self.state.channels[thread.id] = thread

        def build(session: GatewaySession) -> dict[str, Any] | None:
            me = guild.member(self.bot_user.id)
            if me is None or not has(channel_permissions(guild, thread, me), VIEW_CHANNEL):
                return None
            data = thread_payload(thread, member_id=self.bot_user.id)
            data["newly_created"] = True
            return data

        self.gateway.dispatch("THREAD_CREATE", build, intent=gw.GUILDS, guild_id=guild.id)
        self._changed()
        return thread

    def _join_thread(self, thread: ChannelRecord, user: UserRecord, *, join: bool) -> None:
        if join and user.id not in thread.member_ids:
            thread.member_ids.append(user.id)
        elif not join and user.id in thread.member_ids:
            thread.member_ids.remove(user.id)
        self._changed()

    def _check_user_can(self, channel: ChannelRecord, user: UserRecord, needed: int) -> None:
        guild = self.state.guild_of(channel)
        member = None if guild is None else guild.member(user.id)
        if guild is None or member is None:
            raise PermissionError(f"{user.username} is not a member of that server")
        if not has(channel_permissions(guild, channel, member), VIEW_CHANNEL | needed):
            raise PermissionError(f"{user.username} may not do that in #{channel.name}")
