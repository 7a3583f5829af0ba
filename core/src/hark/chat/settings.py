"""The chat plugin's per-server settings (`!config chat KEY VALUE`).

Attachments, reply chains, long answers and tool use are bounded here, per server
and channel, on top of the bot-wide ``[chat]`` table of bot.toml (trigger names,
history depth, DMs, rate limit; see :class:`hark.config.Config`).
"""

from __future__ import annotations

from hark.plugin import Settings, setting


class ChatSettings(Settings):
    max_images: int = setting(
        4, ge=0, le=10, description="images sent with one message to a vision model (0: none)"
    )
    max_image_mb: float = setting(
        8.0, gt=0, le=25, description="the largest image sent to the model, in MB"
    )
    max_file_chars: int = setting(
        20_000,
        ge=0,
        le=200_000,
        description="characters of text attachments included with one message (0: none)",
    )
    reply_chain_depth: int = setting(
        8, ge=0, le=50, description="earlier messages of a reply chain brought into the prompt"
    )
    reply_chain_tokens: int = setting(
        2_000,
        ge=0,
        le=32_000,
        description="the reply chain's share of the prompt, in tokens (about 4 characters each)",
    )
    thread_after_chars: int = setting(
        0,
        ge=0,
        le=100_000,
        description="answers longer than this continue in a new thread (0: never)",
    )
    tool_rounds: int = setting(
        5, ge=0, le=20, description="rounds of tool calls in one turn (0: no tools)"
    )
    tool_seconds: float = setting(
        60.0, gt=0, le=600, description="time all tool calls of one turn may take, in seconds"
    )
