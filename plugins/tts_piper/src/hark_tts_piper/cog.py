"""``!piper``: the offline voice, its settings here, and a way to hear it.

Anyone may look (``!piper``, ``/piper status``) and listen (``!piper say``);
changing this server's speed needs Manage Server (or being the bot's owner).
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from hark import AudioClip, Capability, PluginCog
from hark.audio import convert, wav_bytes
from hark.cog import can_manage
from hark.providers.errors import ConfigurationError, ProviderError
from hark.text import split_message
from hark_tts_piper.synthesizer import (
    DEFAULT_SETTINGS,
    MAX_SPEED,
    MIN_SPEED,
    PiperSynthesizer,
    speak_all,
)

if TYPE_CHECKING:
    from hark.bot import HarkBot

_RESET_WORDS = frozenset({"reset", "default", "clear", "unset", "none"})
#: ``!piper say`` speaks at most this much text (a WAV of it is posted).
SAY_LIMIT = 300
#: The preview WAV's format: small enough to post, as good as the voice itself.
PREVIEW_RATE = 24_000


def parse_speed(text: str) -> float:
    """A speed typed in Discord ("1.25", "1.25x", "125%"); raises ``ValueError``."""
    cleaned = text.strip().lower().removesuffix("x").removesuffix("×")
    percent = cleaned.endswith("%")
    try:
        value = float(cleaned.removesuffix("%"))
    except ValueError:
        value = math.nan
    if percent:
        value /= 100
    if not (math.isfinite(value) and MIN_SPEED <= value <= MAX_SPEED):
        raise ValueError(
            f"speed must be a number from {MIN_SPEED:g} to {MAX_SPEED:g} (1 is the voice's own)"
        )
    return value


class PiperCog(PluginCog, name="Piper"):
    """The offline Piper voice."""

    default_settings = DEFAULT_SETTINGS

    def __init__(self, bot: HarkBot) -> None:
        super().__init__(bot)
        self._fallback: PiperSynthesizer | None = None

    @property
    def synthesizer(self) -> PiperSynthesizer:
        """This plugin's synthesizer as the core registered it (same settings, same voice)."""
        provider = self.provider(PiperSynthesizer)
        if provider is not None:
            return provider
        if self._fallback is None:
            self._fallback = PiperSynthesizer()
            self._fallback.plugin_id = self.plugin_id
            self._fallback.bind(self.settings)
        return self._fallback

    def _in_use_here(self, guild_id: int | None) -> bool:
        control = getattr(self.bot, "control", None)
        if control is None:
            return True
        return control.provider_for(Capability.SYNTHESIZE, guild_id) is self.synthesizer

    def _other_voice(self, guild_id: int | None) -> str | None:
        control = getattr(self.bot, "control", None)
        other = control.provider_for(Capability.SYNTHESIZE, guild_id) if control else None
        return other.id if other is not None else None

    # -- renderers ---------------------------------------------------------

    async def render_status(self, guild_id: int | None) -> str:
        synth = self.synthesizer
        lines = ["**Piper** — offline voice, no key needed"]
        try:
            paths = synth.paths()
            voice = await synth.load()
        except ConfigurationError as exc:
            lines.append(f"Voice: not usable: {exc.message}.")
            return "\n".join(lines)
        speakers = f"{voice.num_speakers} speakers" if voice.num_speakers > 1 else "single speaker"
        lines.append(
            f"Voice: `{voice.name}` ({paths.source}) · {voice.sample_rate:,} Hz, {speakers}"
            f" · played at 48 kHz stereo"
        )
        try:
            speed = synth.speed(voice, guild_id)
            length = synth.length_scale(voice, guild_id)
            noise = synth.noise_scale(voice, guild_id)
            settings = f"speed {speed:.2f}× (length_scale {length:.3g}) · noise_scale {noise:.3g}"
            if voice.num_speakers > 1:
                speaker = synth.setting("speaker", guild_id)
                settings += f" · speaker `{speaker if speaker is not None else 'default'}`"
        except ConfigurationError as exc:
            settings = f"invalid: {exc.message}"
        lines.append(f"Here: {settings}")
        if guild_id is not None and not self._in_use_here(guild_id):
            other = self._other_voice(guild_id)
            lines.append(
                f"Speech here comes from `{other}`; "
                f"`!plugins use synthesize {synth.id}` switches to Piper."
            )
        return "\n".join(lines)

    # -- prefix commands -----------------------------------------------------

    @commands.group(name="piper", invoke_without_command=True)
    async def piper(self, ctx: commands.Context[Any]) -> None:
        """Show the Piper voice and this server's settings."""
        async with ctx.typing():
            text = await self.render_status(ctx.guild.id if ctx.guild else None)
        for part in split_message(text):
            await ctx.send(part)

    @piper.command(name="speed")
    @commands.guild_only()
    async def speed(self, ctx: commands.Context[Any], value: str | None = None) -> None:
        """Show this server's speaking speed; with a value from 0.5 to 2.0 set it, `reset`
        for the voice's own (Manage Server)."""
        assert ctx.guild is not None
        synth = self.synthesizer
        try:
            voice = await synth.load()
        except ConfigurationError as exc:
            await ctx.reply(f"Piper can't speak: {exc.message}.", mention_author=False)
            return
        if value is None:
            try:
                current = f"{synth.speed(voice, ctx.guild.id):.2f}×"
            except ConfigurationError as exc:
                current = f"invalid ({exc.message})"
            await ctx.reply(f"Piper speaks at {current} here.", mention_author=False)
            return
        if not await can_manage(self.bot, ctx.author, ctx.guild):
            raise commands.MissingPermissions(["manage_guild"])
        scope = self.settings.guild(ctx.guild.id)
        if value.strip().lower() in _RESET_WORDS:
            await scope.clear("length_scale")
            await ctx.reply(
                f"Piper speaks at {synth.speed(voice, ctx.guild.id):.2f}× here again.",
                mention_author=False,
            )
            return
        try:
            speed = parse_speed(value)
        except ValueError as exc:
            await ctx.reply(f"{exc}.", mention_author=False)
            return
        await scope.set("length_scale", round(voice.default_length_scale / speed, 4))
        await ctx.reply(f"Piper now speaks at {speed:.2f}× here.", mention_author=False)

    @piper.command(name="say")
    @commands.cooldown(1, 5.0, commands.BucketType.user)
    async def say(self, ctx: commands.Context[Any], *, text: str) -> None:
        """Post a recording of TEXT in this server's Piper voice (a WAV file)."""
        if len(text) > SAY_LIMIT:
            await ctx.reply(
                f"That's {len(text)} characters; I read out at most {SAY_LIMIT}.",
                mention_author=False,
            )
            return
        async with ctx.typing():
            try:
                clips = await speak_all(
                    self.synthesizer, text, guild_id=ctx.guild.id if ctx.guild else None
                )
            except ProviderError as exc:
                await ctx.reply(exc.user_message, mention_author=False)
                return
        if not clips:
            await ctx.reply("There's nothing to say in that.", mention_author=False)
            return
        first = clips[0]
        joined = AudioClip(b"".join(c.pcm for c in clips), first.sample_rate, first.channels)
        data = wav_bytes([convert(joined, PREVIEW_RATE, 1)])
        await ctx.reply(
            f"{joined.duration:.1f}s",
            file=discord.File(io.BytesIO(data), filename="piper.wav"),
            mention_author=False,
        )

    # -- slash commands --------------------------------------------------------

    slash = app_commands.Group(name="piper", description="The offline Piper voice")

    @slash.command(name="status", description="The Piper voice and this server's settings")
    async def slash_status(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        text = await self.render_status(interaction.guild_id)
        for part in split_message(text):
            await interaction.followup.send(part)
