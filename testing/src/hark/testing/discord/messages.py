"""Messages: creation/edit/delete as Discord does it, plus the test helpers.

Both the REST handlers (the bot's own messages) and ``post_message`` (messages
from simulated users) go through ``_create_message`` so that validation,
mention computation and MESSAGE_CREATE dispatch are the same for everyone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from . import errors
from . import gateway as gw
from .base import ChannelLike, MessageLike, ServerCore, UserLike
from .gateway import GatewaySession
from .mentions import compute_mentions, validate_allowed_mentions
from .payloads import member_payload, message_payload
from .permissions import (
    ADD_REACTIONS,
    ATTACH_FILES,
    MENTION_EVERYONE,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    VIEW_CHANNEL,
    channel_permissions,
    has,
)
from .snowflakes import iso_timestamp
from .state import (
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    FLAG_SUPPRESS_EMBEDS,
    MESSAGE_DEFAULT,
    MESSAGE_REPLY,
    AttachmentRecord,
    ChannelRecord,
    GuildRecord,
    MessageRecord,
    UserRecord,
)
from .validation import validate_message
from .web import WebHelpers

# Flags a sender may set when creating a message (SUPPRESS_NOTIFICATIONS, IS_VOICE_MESSAGE,
# IS_COMPONENTS_V2 and SUPPRESS_EMBEDS); EPHEMERAL only via interactions.
_SENDABLE_FLAGS = FLAG_SUPPRESS_EMBEDS | (1 << 12) | (1 << 13) | (1 << 15)


class UploadedFile(NamedTuple):
    """A ``files[n]`` multipart part."""

    filename: str
    data: bytes
    content_type: str | None = None
    index: int = 0  # the n of files[n], which the attachments array refers to


class TypingRecord(NamedTuple):
    channel_id: int
    at: float  # time.time()


class MessageHelpers(WebHelpers, ServerCore):
    typing_events: list[TypingRecord]

    # -- test helpers --------------------------------------------------------

    async def post_message(
        self,
        channel: ChannelLike,
        author: UserLike,
        content: str = "",
        *,
        reference: MessageLike | None = None,
        embeds: Sequence[dict[str, Any]] | None = None,
        files: Sequence[tuple[str, bytes] | tuple[str, bytes, str]] = (),
        allowed_mentions: dict[str, Any] | None = None,
        suppress_embeds: bool = False,
    ) -> MessageRecord:
        """A user posts a message; the bot receives MESSAGE_CREATE like on Discord.

        ``files``: ``(name, data)`` or ``(name, data, content_type)``; Discord works
        out the type from the name (see :mod:`.media`). ``channel`` may be a thread.
        Links to what the test published (:meth:`publish_image`) get embeds after
        ``unfurl_delay`` seconds, unless ``suppress_embeds``."""
        record = self._channel(channel)
        user = self._user(author)
        guild = self.state.guild_of(record)
        if guild is not None:
            member = guild.member(user.id)
            if member is None:
                raise PermissionError(f"{user.username} is not a member of {guild.name}")
            if not has(channel_permissions(guild, record, member), VIEW_CHANNEL | SEND_MESSAGES):
                raise PermissionError(f"{user.username} cannot send messages in #{record.name}")
        elif user not in record.recipients:
            raise PermissionError(f"{user.username} is not a recipient of DM channel {record.id}")
        body: dict[str, Any] = {"content": content}
        if embeds:
            body["embeds"] = list(embeds)
        if allowed_mentions is not None:
            body["allowed_mentions"] = allowed_mentions
        if reference is not None:
            body["message_reference"] = {"message_id": str(self._message(reference).id)}
        if suppress_embeds:
            body["flags"] = FLAG_SUPPRESS_EMBEDS
        uploads = [
            UploadedFile(f[0], f[1], f[2] if len(f) > 2 else None, n)  # type: ignore[misc]
            for n, f in enumerate(files)
        ]
        message = self._create_message(record, user, body, uploads)
        await self.gateway.flush()
        return message

    async def post_typing(self, channel: ChannelLike, user: UserLike) -> None:
        """A user starts typing (TYPING_START)."""
        record = self._channel(channel)
        typer = self._user(user)
        data: dict[str, Any] = {
            "channel_id": str(record.id),
            "user_id": str(typer.id),
            "timestamp": int(time.time()),
        }
        guild = self.state.guild_of(record)
        if guild is not None:
            data["guild_id"] = str(guild.id)
            member = guild.member(typer.id)
            if member is not None:
                data["member"] = member_payload(member)
        intent = gw.DIRECT_MESSAGE_TYPING if guild is None else gw.GUILD_MESSAGE_TYPING
        self.gateway.dispatch(
            "TYPING_START", data, intent=intent, guild_id=None if guild is None else guild.id
        )
        await self.gateway.flush()

    async def add_reaction(self, message: MessageLike, user: UserLike, emoji: str) -> None:
        """A user reacts to a message (MESSAGE_REACTION_ADD)."""
        record = self._message(message)
        self._react(record, self._user(user), emoji)
        await self.gateway.flush()

    def messages(self, channel: ChannelLike) -> list[MessageRecord]:
        """Every message stored in ``channel`` in creation order.

        Includes deleted (``.deleted``) and ephemeral (``.ephemeral``) ones.
        """
        return list(self.state.iter_messages(self._channel(channel).id))

    async def wait_for_message(
        self,
        channel: ChannelLike | None = None,
        author: UserLike | None = None,
        *,
        check: Callable[[MessageRecord], bool] | None = None,
        timeout: float = 10.0,
        after: MessageLike | None = None,
    ) -> MessageRecord:
        """The next message (created after this call, or after ``after``) matching.

        ``channel``/``author`` None mean any. Deferred interaction placeholders
        only match once they have been filled in.
        """
        channel_id = None if channel is None else self._channel(channel).id
        author_id = None if author is None else self._user(author).id
        start_seq = self._message_seq
        after_id = None if after is None else (after if isinstance(after, int) else after.id)

        def candidates() -> list[MessageRecord]:
            # Newest first until the start point: waiters are re-checked on every
            # state change, so scanning only new messages keeps many waiters cheap.
            pool = (
                self.state.messages.values()
                if channel_id is None
                else self.state.channel_messages.get(channel_id, ())
            )
            recent: list[MessageRecord] = []
            for message in reversed(pool):
                if after_id is None and message.seq <= start_seq:
                    break
                recent.append(message)
            recent.reverse()
            return recent

        def find() -> MessageRecord | None:
            for message in candidates():
                if after_id is not None:
                    if message.id <= after_id:
                        continue
                elif message.seq <= start_seq:
                    continue
                if channel_id is not None and message.channel_id != channel_id:
                    continue
                if author_id is not None and message.author.id != author_id:
                    continue
                if message.loading or (check is not None and not check(message)):
                    continue
                return message
            return None

        def describe() -> str:
            where = "any channel" if channel_id is None else f"channel {channel_id}"
            recent = [
                f"{m.author.username}: {m.content[:60]!r}"
                for m in list(self.state.messages.values())[-5:]
            ]
            return (
                f"a message in {where} by {author_id or 'anyone'}; last messages: {recent}; "
                + self._recent_failures()
            )

        return await self._waiters.wait_for(find, timeout=timeout, describe=describe)

    async def wait_for_edit(
        self,
        message: MessageLike,
        check: Callable[[MessageRecord], bool] | None = None,
        *,
        timeout: float = 10.0,
    ) -> MessageRecord:
        """Wait for the next edit of ``message`` (made after this call)."""
        record = self._message(message)
        start = len(record.edits)

        def edited() -> MessageRecord | None:
            if len(record.edits) > start and (check is None or check(record)):
                return record
            return None

        return await self._waiters.wait_for(
            edited,
            timeout=timeout,
            describe=lambda: (
                f"an edit of message {record.id} ({record.content[:60]!r}); "
                + self._recent_failures()
            ),
        )

    async def wait_for_delete(self, message: MessageLike, *, timeout: float = 10.0) -> None:
        record = self._message(message)
        await self._waiters.wait_for(
            lambda: True if record.deleted else None,
            timeout=timeout,
            describe=lambda: f"deletion of message {record.id}",
        )

    # -- core operations (used by REST handlers too) -------------------------

    def _create_message(
        self,
        channel: ChannelRecord,
        author: UserRecord,
        body: dict[str, Any],
        files: Sequence[UploadedFile],
        *,
        message_type: int | None = None,
        extra_flags: int = 0,
        webhook_id: int | None = None,
        interaction: dict[str, Any] | None = None,
        message_id: int | None = None,
        reference: dict[str, Any] | None = None,
    ) -> MessageRecord:
        """``message_id``: an id minted already (a forum post's first message has its
        thread's); ``reference``: a system message's own message_reference."""
        validate_message(
            body, file_count=len(files), require_content=not extra_flags & FLAG_LOADING
        )
        allowed = body.get("allowed_mentions")
        validate_allowed_mentions(allowed)
        guild = self.state.guild_of(channel)
        replied_to = None
        if reference is None:
            reference, replied_to = self._resolve_reference(
                channel, guild, body.get("message_reference")
            )
        flags = (int(body.get("flags") or 0) & _SENDABLE_FLAGS) | extra_flags
        ephemeral = bool(flags & FLAG_EPHEMERAL)
        if message_type is None:
            message_type = MESSAGE_REPLY if reference else MESSAGE_DEFAULT
        message = MessageRecord(
            id=message_id or self.ids.next(),
            channel_id=channel.id,
            guild_id=None if guild is None else guild.id,
            author=author,
            content=body.get("content") or "",
            type=message_type,
            flags=flags,
            tts=bool(body.get("tts")),
            nonce=body.get("nonce"),
            embeds=list(body.get("embeds") or []),
            attachments=self._attachments_from(body, files, ephemeral=ephemeral),
            components=list(body.get("components") or []),
            sticker_ids=[int(s) for s in body.get("sticker_ids") or []],
            poll=body.get("poll"),
            message_reference=reference,
            allowed_mentions=allowed,
            webhook_id=webhook_id,
            application_id=self.application_id if webhook_id is not None else None,
            interaction=interaction,
        )
        self._apply_mentions(message, guild, channel, replied_to)
        message.embeds.extend(self._link_embeds_at_creation(message))
        self._message_seq += 1
        message.seq = self._message_seq
        self.state.add_message(message)
        if not ephemeral:
            self._dispatch_message("MESSAGE_CREATE", message)
            self._schedule_unfurl(message)
        self._changed()
        return message

    def _edit_message(
        self, message: MessageRecord, body: dict[str, Any], files: Sequence[UploadedFile]
    ) -> MessageRecord:
        validate_message(body, file_count=len(files), require_content=False)
        validate_allowed_mentions(body.get("allowed_mentions"))
        content = (body["content"] or "") if "content" in body else message.content
        embeds = list(body["embeds"] or []) if "embeds" in body else message.embeds
        components = list(body["components"] or []) if "components" in body else message.components
        keeps_files = bool(files) or (
            bool(message.attachments) and body.get("attachments", True) not in ([], None)
        )
        if not (content.strip() or embeds or components or keeps_files or message.poll):
            raise errors.empty_message()  # an edit cannot leave a message empty either
        message.edits.append(message.content)
        message.content, message.embeds, message.components = content, embeds, components
        if "flags" in body and body["flags"] is not None:
            keep = message.flags & ~FLAG_SUPPRESS_EMBEDS
            message.flags = keep | (int(body["flags"]) & FLAG_SUPPRESS_EMBEDS)
        if "attachments" in body or files:
            message.attachments = self._attachments_from(
                body, files, ephemeral=message.ephemeral, existing=message.attachments
            )
        if "allowed_mentions" in body:
            message.allowed_mentions = body["allowed_mentions"]
        # Filling a deferred interaction response turns the placeholder into a message.
        message.flags &= ~FLAG_LOADING
        message.edited_timestamp = iso_timestamp()
        guild = self.state.guilds.get(message.guild_id or 0)
        channel = self.state.channels[message.channel_id]
        replied_to = self.state.messages.get(message.reference_id or 0)
        self._apply_mentions(message, guild, channel, replied_to)
        if not message.ephemeral:
            self._dispatch_message("MESSAGE_UPDATE", message)
        self._changed()
        return message

    def _delete_message(self, message: MessageRecord) -> None:
        message.deleted = True
        if not message.ephemeral:
            data: dict[str, Any] = {"id": str(message.id), "channel_id": str(message.channel_id)}
            if message.guild_id is not None:
                data["guild_id"] = str(message.guild_id)
            self.gateway.dispatch(
                "MESSAGE_DELETE",
                data,
                intent=gw.DIRECT_MESSAGES if message.guild_id is None else gw.GUILD_MESSAGES,
                guild_id=message.guild_id,
            )
        self._changed()

    def _react(self, message: MessageRecord, user: UserRecord, emoji: str) -> None:
        channel = self.state.channels[message.channel_id]
        guild = self.state.guild_of(channel)
        users = message.reactions.setdefault(emoji, [])
        if guild is not None and not users:
            member = guild.member(user.id)
            if member is None or not has(
                channel_permissions(guild, channel, member), ADD_REACTIONS
            ):
                raise errors.missing_permissions()
        if user.id in users:
            return
        users.append(user.id)
        name, _, emoji_id = emoji.partition(":")
        data: dict[str, Any] = {
            "user_id": str(user.id),
            "channel_id": str(message.channel_id),
            "message_id": str(message.id),
            "message_author_id": str(message.author.id),
            "emoji": {"id": emoji_id or None, "name": name},
            "burst": False,
            "type": 0,
        }
        if guild is not None:
            data["guild_id"] = str(guild.id)
            member = guild.member(user.id)
            if member is not None:
                data["member"] = member_payload(member)
        intent = gw.DIRECT_MESSAGE_REACTIONS if guild is None else gw.GUILD_MESSAGE_REACTIONS
        self.gateway.dispatch(
            "MESSAGE_REACTION_ADD",
            data,
            intent=intent,
            guild_id=None if guild is None else guild.id,
        )
        self._changed()

    def _unreact(self, message: MessageRecord, user_id: int, emoji: str) -> None:
        users = message.reactions.get(emoji, [])
        if user_id not in users:
            return
        users.remove(user_id)
        name, _, emoji_id = emoji.partition(":")
        data: dict[str, Any] = {
            "user_id": str(user_id),
            "channel_id": str(message.channel_id),
            "message_id": str(message.id),
            "emoji": {"id": emoji_id or None, "name": name},
            "burst": False,
            "type": 0,
        }
        if message.guild_id is not None:
            data["guild_id"] = str(message.guild_id)
        intent = (
            gw.DIRECT_MESSAGE_REACTIONS if message.guild_id is None else gw.GUILD_MESSAGE_REACTIONS
        )
        self.gateway.dispatch(
            "MESSAGE_REACTION_REMOVE", data, intent=intent, guild_id=message.guild_id
        )
        self._changed()

    # -- helpers -------------------------------------------------------------

    def _resolve_reference(
        self, channel: ChannelRecord, guild: GuildRecord | None, ref: Any
    ) -> tuple[dict[str, Any] | None, MessageRecord | None]:
        if not ref:
            return None, None
        target = self.state.messages.get(int(ref.get("message_id") or 0))
        if target is None or target.deleted:
            if ref.get("fail_if_not_exists", True):
                raise errors.field_error(
                    "message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message"
                )
            return None, None
        normalized: dict[str, Any] = {
            "type": int(ref.get("type") or 0),
            "message_id": str(target.id),
            "channel_id": str(target.channel_id),
        }
        if target.guild_id is not None:
            normalized["guild_id"] = str(target.guild_id)
        if normalized["type"] == 0 and target.channel_id != channel.id:
            raise errors.field_error(
                "message_reference",
                "REPLIES_CANNOT_REFERENCE_OTHER_CHANNEL",
                "Cannot reply across channels",
            )
        return normalized, target

    def _attachments_from(
        self,
        body: dict[str, Any],
        files: Sequence[UploadedFile],
        *,
        ephemeral: bool,
        existing: Sequence[AttachmentRecord] = (),
    ) -> list[AttachmentRecord]:
        """Resolve the ``attachments`` array against uploaded ``files[n]`` parts.

        Entries with an id of an existing attachment keep it (edits); entries with
        a small integer id describe the upload of ``files[id]``.
        """
        by_id = {a.id: a for a in existing}
        described: dict[int, dict[str, Any]] = {}
        result: list[AttachmentRecord] = []
        for entry in body.get("attachments") or []:
            entry_id = int(entry.get("id", -1))
            if entry_id in by_id:
                result.append(by_id[entry_id])
            else:
                described[entry_id] = entry
        for upload in files:
            info = described.get(upload.index, {})
            result.append(
                self._store_attachment(
                    info.get("filename") or upload.filename,
                    upload.data,
                    content_type=upload.content_type,
                    description=info.get("description"),
                    ephemeral=ephemeral,
                )
            )
        return result

    def _apply_mentions(
        self,
        message: MessageRecord,
        guild: GuildRecord | None,
        channel: ChannelRecord,
        replied_to: MessageRecord | None,
    ) -> None:
        can_everyone = False
        if guild is not None:
            member = guild.member(message.author.id)
            can_everyone = member is not None and has(
                channel_permissions(guild, channel, member), MENTION_EVERYONE
            )
        mentions = compute_mentions(
            self.state,
            guild=guild,
            content=message.content,
            allowed=message.allowed_mentions,
            can_mention_everyone=can_everyone,
            replied_to=replied_to,
            author_id=message.author.id,
        )
        message.mentions = mentions.users
        message.mention_roles = mentions.roles
        message.mention_everyone = mentions.everyone

    def _dispatch_message(self, event: str, message: MessageRecord) -> None:
        guild = self.state.guilds.get(message.guild_id or 0)
        channel = self.state.channels[message.channel_id]

        def build(session: GatewaySession) -> dict[str, Any] | None:
            if guild is not None:
                # Discord only sends messages from channels the bot can see.
                me = guild.member(self.bot_user.id)
                if me is None or not has(channel_permissions(guild, channel, me), VIEW_CHANNEL):
                    return None
            data = message_payload(self.state, message)
            if not self._can_read_content(session, message):
                data.update(content="", embeds=[], attachments=[], components=[])
                data.pop("poll", None)
            return data

        self.gateway.dispatch(
            event,
            build,
            intent=gw.DIRECT_MESSAGES if guild is None else gw.GUILD_MESSAGES,
            guild_id=None if guild is None else guild.id,
        )

    def _can_read_content(self, session: GatewaySession, message: MessageRecord) -> bool:
        """The MESSAGE_CONTENT rule: the intent, a DM, own messages or a mention."""
        return bool(
            session.intents & gw.MESSAGE_CONTENT
            or message.guild_id is None
            or message.author.id == self.bot_user.id
            or self.bot_user.id in message.mention_ids
        )

    def _check_bot_can_send(self, channel: ChannelRecord, *, with_files: bool, reply: bool) -> None:
        guild = self.state.guild_of(channel)
        if guild is None:
            recipient = channel.recipients[0] if channel.recipients else None
            if recipient is None or not recipient.accepts_dms or recipient.bot:
                raise errors.cannot_dm()
            return
        me = guild.member(self.bot_user.id)
        perms = 0 if me is None else channel_permissions(guild, channel, me)
        needed = SEND_MESSAGES
        if with_files:
            needed |= ATTACH_FILES
        if reply:
            needed |= READ_MESSAGE_HISTORY
        if not has(perms, needed):
            raise errors.missing_permissions()

    def _record_typing(self, channel: ChannelRecord) -> None:
        self.typing_events.append(TypingRecord(channel.id, time.time()))
        self._changed()
