"""Replies being streamed, kept in a small table so a crash cannot leave them open.

A streamed reply is posted with a "still writing" marker (``…``) and edited as it
grows. If the process dies (kill -9, power loss) before the last edit, Discord
keeps the marker for ever. Each message posted with the marker is recorded here
and forgotten once its reply is finished or cut; on the next start
:func:`mark_unfinished` edits whatever is left to say it was cut off. When several
processes share the database (shards), each row names the shards that posted it and
a restarting process marks only its own.

Replies that arrive within one edit interval are posted once, final, and never
touch this table.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import discord

from hark.store import Database

log = logging.getLogger(__name__)

CUT_OFF = "[cut off]"
# Older rows are dropped unedited: Discord users have long moved on by then.
MAX_AGE = 7 * 24 * 3600.0
# How long a bookkeeping write waits out another process's lock before it gives up.
WRITE_PATIENCE = 10.0


def _ids(handle: Any) -> tuple[int, int] | None:
    """(channel id, message id) of a posted message; None for an interaction's
    original response, which has no message id of its own to edit later."""
    message_id = getattr(handle, "id", None)
    channel = getattr(handle, "channel", None)
    channel_id = getattr(channel, "id", None)
    if isinstance(message_id, int) and isinstance(channel_id, int):
        return channel_id, message_id
    return None


def cut_off_text(content: str, placeholder: str) -> str | None:
    """The content a reply left with ``placeholder`` should end with, or None when it
    is already final (the process died after the last edit)."""
    if not content.endswith(placeholder):
        return None
    return f"{content[: -len(placeholder)].rstrip()} {CUT_OFF}"


class InflightReplies:
    def __init__(self, db: Database, owner: str = "") -> None:
        self.db = db
        # Which processes' rows are this one's to mark after a restart: '' for an
        # unsharded bot, else its shards ("0-1/4"); several processes share one database.
        self.owner = owner
        self._writes: set[asyncio.Task[None]] = set()

    async def started(self, handle: Any) -> None:
        """``handle`` was posted with the still-writing marker."""
        ids = _ids(handle)
        if ids is not None:
            await self._write(
                "INSERT INTO inflight_reply (message_id, channel_id, created_at, owner)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (message_id) DO UPDATE SET"
                " channel_id = excluded.channel_id, created_at = excluded.created_at,"
                " owner = excluded.owner",
                (ids[1], ids[0], time.time(), self.owner),
            )

    async def ended(self, handles: list[Any]) -> None:
        """The reply that posted ``handles`` is final or marked as cut: forget it."""
        ids = [i[1] for h in handles if (i := _ids(h)) is not None]
        if ids:
            marks = ", ".join("?" for _ in ids)
            await self._write(f"DELETE FROM inflight_reply WHERE message_id IN ({marks})", ids)

    async def _write(self, sql: str, params: Any) -> None:
        # Bookkeeping only: it runs beside the reply, which must never wait for it (a
        # database locked by another process) or fail with it. A row left behind is
        # harmless: mark_unfinished edits only messages that still end in the marker.
        task = asyncio.create_task(self._run(sql, params))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _run(self, sql: str, params: Any) -> None:
        try:
            async with self.db.transaction(patience=WRITE_PATIENCE) as tx:
                await tx.execute(sql, params)
        except Exception as exc:
            log.warning("could not record a reply in progress: %s", exc)

    async def drain(self) -> None:
        """Wait for the bookkeeping writes still running (before the database closes)."""
        if self._writes:
            await asyncio.wait(set(self._writes))

    async def mark_unfinished(self, client: discord.Client, placeholder: str) -> int:
        """Edit every reply a previous run left unfinished to end in ``[cut off]``;
        returns how many were edited. Failures (a deleted message or channel) are
        logged in one line each and forgotten. Only this process layout's rows
        (:attr:`owner`): another live process may still be streaming its own."""
        # Rows nobody marked (a shard layout since changed) go once they are old.
        await self.db.execute(
            "DELETE FROM inflight_reply WHERE created_at < ?", (time.time() - MAX_AGE,)
        )
        rows = await self.db.fetchall(
            "SELECT channel_id, message_id, created_at FROM inflight_reply WHERE owner = ?"
            " ORDER BY message_id",
            (self.owner,),
        )
        edited = 0
        for channel_id, message_id, created_at in rows:
            if time.time() - created_at < MAX_AGE:
                try:
                    message = await client.get_partial_messageable(channel_id).fetch_message(
                        message_id
                    )
                    text = cut_off_text(message.content, placeholder)
                    if text is not None:
                        await message.edit(
                            content=text, allowed_mentions=discord.AllowedMentions.none()
                        )
                        edited += 1
                except discord.HTTPException as exc:
                    log.warning(
                        "could not mark unfinished reply %s in channel %s as cut off: %s",
                        message_id,
                        channel_id,
                        exc,
                    )
            await self.db.execute("DELETE FROM inflight_reply WHERE message_id = ?", (message_id,))
        if edited:
            log.info("marked %d replies left unfinished by the last run as cut off", edited)
        return edited
