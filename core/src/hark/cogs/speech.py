"""Spoken replies in text channels: `!say` and an optional `voice.wav` on every reply.

The WAV is built in memory with the standard ``wave`` module (24 kHz mono keeps it
small: ~48 KB a second), so no temporary file is ever written. A synthesizer
failure never costs the text: `!say` answers with a short notice, and an
attached-speech failure leaves the text reply as it is.
"""

from __future__ import annotations

import io
import logging
from typing import Any

import discord
from discord.ext import commands

from hark.audio import StreamResampler, wav_bytes
from hark.cog import PluginCog, manage_server
from hark.plugin import RESET_WORDS
from hark.providers import AudioClip, Capability, ContextRequest, Synthesizer
from hark.providers.errors import ProviderError

log = logging.getLogger(__name__)

WAV_RATE = 24_000
FILENAME = "voice.wav"


class SpeechCog(PluginCog, name="Speech"):
    """Hear the bot in text channels."""

    default_settings = {"attach": False}

    async def speak_to_wav(
        self, text: str, guild_id: int | None, channel_id: int | None = None
    ) -> bytes:
        synthesizer = self.bot.control.provider_for(Capability.SYNTHESIZE, guild_id)
        if not isinstance(synthesizer, Synthesizer):
            raise ProviderError("no synthesizer is enabled here", provider="speech")
        # The synthesizer splits long text itself; one resampler for the whole reply
        # keeps its filter state across chunks (no clicks at chunk boundaries).
        clips: list[AudioClip] = []
        resampler: StreamResampler | None = None
        async for clip in synthesizer.synthesize(text, guild_id=guild_id, channel_id=channel_id):
            if resampler is None:
                resampler = StreamResampler(clip.sample_rate, clip.channels, WAV_RATE, 1)
            clips.append(resampler.feed(clip.pcm))
        if resampler is None:
            raise ProviderError("the synthesizer produced no audio", provider=synthesizer.id)
        clips.append(resampler.flush())
        return wav_bytes([c for c in clips if c.pcm])

    @commands.command()
    async def say(self, ctx: commands.Context[Any], *, text: str) -> None:
        """Post the spoken version of TEXT as voice.wav."""
        async with ctx.typing():
            try:
                data = await self.speak_to_wav(
                    text, ctx.guild.id if ctx.guild else None, ctx.channel.id
                )
            except ProviderError as exc:
                await ctx.reply(exc.user_message, mention_author=False)
                return
        await ctx.reply(file=discord.File(io.BytesIO(data), FILENAME), mention_author=False)

    def attach_enabled(self, guild_id: int | None, channel_id: int) -> bool:
        channel = self.settings.channel(channel_id)
        if channel.is_set("attach"):
            return bool(channel.get("attach"))
        return bool(self.settings.guild(guild_id).get("attach"))

    @commands.Cog.listener()
    async def on_hark_reply(self, request: ContextRequest, text: str, messages: list[Any]) -> None:
        """Attach speech to a delivered text reply when this server/channel asked for it."""
        if (
            request.channel_id is None
            or not messages
            or not self.attach_enabled(request.guild_id, request.channel_id)
        ):
            return
        last = messages[-1]
        if not isinstance(last, discord.Message):
            return
        try:
            data = await self.speak_to_wav(text, request.guild_id, request.channel_id)
            await last.add_files(discord.File(io.BytesIO(data), FILENAME))
        except (ProviderError, discord.HTTPException) as exc:
            log.warning("spoken reply failed in channel %s: %s", request.channel_id, exc)

    @commands.group(name="speech", invoke_without_command=True)
    @commands.guild_only()
    async def speech(self, ctx: commands.Context[Any]) -> None:
        """Show whether replies here come with a voice.wav."""
        state = "on" if self.attach_enabled(ctx.guild.id, ctx.channel.id) else "off"
        await ctx.send(
            f"Spoken replies in this channel: **{state}**. "
            f"Change with `{ctx.clean_prefix}speech attach on|off` (server) or "
            f"`{ctx.clean_prefix}speech channel on|off|default`."
        )

    @speech.command(name="attach")
    @manage_server()
    async def speech_attach(self, ctx: commands.Context[Any], state: bool) -> None:
        """Attach voice.wav to every reply in this server (Manage Server)."""
        await self.settings.guild(ctx.guild.id).set("attach", state)
        await ctx.reply(
            f"Spoken replies {'on' if state else 'off'} in this server.", mention_author=False
        )

    @speech.command(name="channel")
    @manage_server()
    async def speech_channel(self, ctx: commands.Context[Any], state: str) -> None:
        """Override for this channel: on, off, or default (follow the server)."""
        scope = self.settings.channel(ctx.channel.id)
        if state.lower() in RESET_WORDS:
            await scope.clear("attach")
            await ctx.reply(
                "This channel follows the server's setting again.", mention_author=False
            )
            return
        value = state.lower() in ("on", "yes", "true", "1")
        if not value and state.lower() not in ("off", "no", "false", "0"):
            raise commands.BadArgument("Say on, off or default.")
        await scope.set("attach", value)
        await ctx.reply(
            f"Spoken replies {'on' if value else 'off'} in this channel.", mention_author=False
        )
