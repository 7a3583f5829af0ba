"""``!azure``: where the plugin speaks from, which voices it offers, this server's voice.

Anyone may look; choosing this server's voice, rate or pitch needs Manage Server
(or being the bot's owner). The key is never shown, only whether one is set.
"""

from __future__ import annotations

from typing import Any

from discord.ext import commands

from hark.cog import PluginCog, require_manager
from hark.providers.errors import ProviderError
from hark.text import split_message
from hark_tts_azure.ssml import parse_pitch, parse_rate
from hark_tts_azure.synthesizer import AzureSynthesizer

# Longest voice list shown in one answer; a filter narrows longer ones
# (Azure offers several hundred voices).
MAX_LISTED = 40

_RESET_WORDS = frozenset({"reset", "clear", "none", "unset"})


class AzureCog(PluginCog, name="Azure Speech"):
    """Azure Speech text to speech: region, voices and this server's voice."""

    def synthesizer(self) -> AzureSynthesizer | None:
        """This plugin's synthesizer instance (the one the bot speaks with)."""
        return self.provider(AzureSynthesizer)

    async def cog_unload(self) -> None:
        # The core has no shutdown hook for providers; the bot removes its cogs when it
        # closes, so this is where the synthesizer's connection pool is closed.
        synthesizer = self.synthesizer()
        if synthesizer is not None:
            await synthesizer.aclose()

    async def _require(self, ctx: commands.Context[Any]) -> AzureSynthesizer | None:
        synthesizer = self.synthesizer()
        if synthesizer is None:
            await ctx.reply("The Azure Speech synthesizer is not loaded.", mention_author=False)
        return synthesizer

    def _origin(self, key: str, guild_id: int | None, default: str) -> str:
        if guild_id is not None and self.settings.guild(guild_id).is_set(key):
            return "set for this server"
        if self.settings.global_().is_set(key):
            return "bot-wide setting"
        return default

    # -- commands ----------------------------------------------------------

    @commands.group(name="azure", invoke_without_command=True)
    async def azure(self, ctx: commands.Context[Any]) -> None:
        """Show the region, this server's voice and prosody (never the key)."""
        synthesizer = await self._require(ctx)
        if synthesizer is None:
            return
        guild_id = ctx.guild.id if ctx.guild else None
        if synthesizer.endpoint:
            where = f"Endpoint: `{synthesizer.public_base_url}`"
        elif synthesizer.region:
            where = f"Region: `{synthesizer.region}`"
        else:
            where = "Region: not set"
        voice = synthesizer.voice_for(guild_id)
        rate, pitch = synthesizer.prosody_for(guild_id)
        lines = [
            "**Azure Speech** (text to speech)",
            where,
            f"Key: {'set' if synthesizer.has_key else 'not set'}",
            f"Voice: `{voice}` ({self._origin('voice', guild_id, 'default, AZURE_SPEECH_VOICE')})",
            f"Rate: {rate or 'voice default'}, pitch: {pitch or 'voice default'}",
        ]
        reason = synthesizer.unavailable_reason()
        if reason:
            lines.append(f"⚠ Not usable: {reason}.")
        p = ctx.clean_prefix
        lines.append(
            f"`{p}azure voices [filter]` lists voices (e.g. `{p}azure voices en-GB female`);"
            f" `{p}azure voice NAME`, `{p}azure rate +10%` and `{p}azure pitch -5%` change this"
            " server's choice (Manage Server)."
        )
        await ctx.send("\n".join(lines))

    @azure.command(name="voices")
    async def voices(self, ctx: commands.Context[Any], *, filter: str = "") -> None:
        """List the voices (only those matching FILTER: a locale, language, gender, name)."""
        synthesizer = await self._require(ctx)
        if synthesizer is None:
            return
        try:
            voices = await synthesizer.list_voices()
        except ProviderError as exc:
            await ctx.reply(exc.user_message, mention_author=False)
            return
        guild_id = ctx.guild.id if ctx.guild else None
        current = synthesizer.voice_for(guild_id).lower()
        words = filter.split()
        matching = [v for v in voices if v.matches(words)]
        if not matching:
            await ctx.reply(
                f"No voice matches `{filter}` ({len(voices)} voices in all).", mention_author=False
            )
            return
        what = f" matching `{filter}`" if words else ""
        lines = [f"**Azure voices**{what}: {len(matching)} of {len(voices)}"]
        # This server's voice always makes the cut, first.
        matching.sort(key=lambda v: v.short_name.lower() != current)
        where = "this server" if guild_id else "here"
        for voice in matching[:MAX_LISTED]:
            mark = f" ← {where}" if voice.short_name.lower() == current else ""
            lines.append(f"`{voice.short_name}` {voice.describe()}{mark}")
        if len(matching) > MAX_LISTED:
            lines.append(
                f"…and {len(matching) - MAX_LISTED} more; narrow the list with"
                f" `{ctx.clean_prefix}azure voices FILTER` (e.g. a locale such as `en-GB`)."
            )
        for part in split_message("\n".join(lines)):
            await ctx.send(part)

    @azure.command(name="voice")
    async def voice(self, ctx: commands.Context[Any], name: str | None = None) -> None:
        """Show, choose or `reset` this server's voice (choosing needs Manage Server)."""
        synthesizer = await self._require(ctx)
        if synthesizer is None:
            return
        guild_id = ctx.guild.id if ctx.guild else None
        if name is None:
            voice = synthesizer.voice_for(guild_id)
            origin = self._origin("voice", guild_id, "default, AZURE_SPEECH_VOICE")
            await ctx.reply(f"This server speaks with `{voice}` ({origin}).", mention_author=False)
            return
        await require_manager(ctx)
        assert ctx.guild is not None
        if name.lower() in _RESET_WORDS:
            await synthesizer.set_voice(ctx.guild.id, None)
            await ctx.reply(
                f"This server's voice is back to `{synthesizer.voice_for(ctx.guild.id)}`.",
                mention_author=False,
            )
            return
        try:
            found = await synthesizer.find_voice(name)
        except ProviderError as exc:
            # An unchecked name would fail every later synthesis: refuse rather than guess.
            await ctx.reply(
                f"I couldn't check `{name}` against Azure's voice list, so nothing changed."
                f" {exc.user_message}",
                mention_author=False,
            )
            return
        if found is None:
            await ctx.reply(
                f"Azure Speech ({synthesizer.where}) has no voice `{name}`; see"
                f" `{ctx.clean_prefix}azure voices`.",
                mention_author=False,
            )
            return
        await synthesizer.set_voice(ctx.guild.id, found.short_name)
        await ctx.reply(
            f"This server now speaks with `{found.short_name}` ({found.describe()}).",
            mention_author=False,
        )

    async def _prosody(self, ctx: commands.Context[Any], key: str, value: str | None) -> None:
        synthesizer = await self._require(ctx)
        if synthesizer is None:
            return
        guild_id = ctx.guild.id if ctx.guild else None
        if value is None:
            current = synthesizer.setting(key, guild_id)
            origin = self._origin(key, guild_id, "the voice's own")
            shown = f"`{current}`" if current else "the voice's default"
            await ctx.reply(f"This server's {key} is {shown} ({origin}).", mention_author=False)
            return
        await require_manager(ctx)
        assert ctx.guild is not None
        if value.lower() in _RESET_WORDS:
            await synthesizer.store_setting(key, ctx.guild.id, None)
            current = synthesizer.setting(key, ctx.guild.id)
            shown = f"`{current}`" if current else "the voice's default"
            await ctx.reply(f"This server's {key} is back to {shown}.", mention_author=False)
            return
        try:
            parsed = parse_rate(value) if key == "rate" else parse_pitch(value)
        except ValueError as exc:
            await ctx.reply(f"`{value}` won't do: {exc}.", mention_author=False)
            return
        await synthesizer.store_setting(key, ctx.guild.id, parsed)
        await ctx.reply(f"This server's {key} is now `{parsed}`.", mention_author=False)

    @azure.command(name="rate")
    async def rate(self, ctx: commands.Context[Any], value: str | None = None) -> None:
        """Show or set this server's speaking rate (`+20%`, `0.8`, `slow`, `reset`)."""
        await self._prosody(ctx, "rate", value)

    @azure.command(name="pitch")
    async def pitch(self, ctx: commands.Context[Any], value: str | None = None) -> None:
        """Show or set this server's pitch (`+10%`, `-2st`, `low`, `reset`)."""
        await self._prosody(ctx, "pitch", value)
