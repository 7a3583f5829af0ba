"""The model's tools: ``remember`` (store a fact now) and ``recall`` (search memory).

Both act in the turn's own space (its server, or the member's DMs), through the
memory of the bot behind ``ctx.host``, which the Cog attaches when it loads."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

import hark
from hark_memory.engine import Memory
from hark_memory.store import space_of

_MEMORIES: dict[Any, Memory] = {}


def attach(host: Any, memory: Memory) -> None:
    _MEMORIES[host] = memory


def detach(host: Any, memory: Memory) -> None:
    if _MEMORIES.get(host) is memory:
        del _MEMORIES[host]


def _memory(ctx: hark.ToolContext) -> Memory | None:
    return _MEMORIES.get(ctx.host) if ctx.host is not None else None


class RememberArgs(BaseModel):
    text: str = Field(
        min_length=3,
        max_length=300,
        description="the fact, one short sentence in the third person ('likes green tea')",
    )
    about_speaker: bool = Field(
        True, description="true: about the person who asked; false: about this server"
    )


class RecallArgs(BaseModel):
    query: str = Field(min_length=1, max_length=200, description="what to look for")


@hark.tool(timeout=5)
async def remember(args: RememberArgs, ctx: hark.ToolContext) -> str:
    """Save a durable fact to long-term memory when the person asks you to remember
    something (about themselves, or about this server). Never for secrets."""
    memory = _memory(ctx)
    if memory is None:
        return "memory is not available here"
    fact_id = await memory.remember(ctx.request, args.text, about_speaker=args.about_speaker)
    if fact_id is None:
        return "not saved: memory is off here, or that looks like a secret"
    return f"saved as fact {fact_id}"


@hark.tool(timeout=5)
async def recall(args: RecallArgs, ctx: hark.ToolContext) -> str:
    """Search long-term memory of this server (or this DM) for facts about a topic
    or a person."""
    memory = _memory(ctx)
    space = space_of(ctx.guild_id, ctx.user_id)
    if memory is None or space is None:
        return "memory is not available here"
    if not memory.settings(ctx.guild_id, ctx.channel_id).enabled:
        return "memory is off here"
    facts = await memory.store.search(space, args.query, limit=10)
    if not facts:
        return "nothing remembered about that"
    return "\n".join(f"- ({f.subject_name or 'server'}) {f.text}" for f in facts)


TOOLS = (remember, recall)
