"""``!elevenlabs``: this server's ElevenLabs voice, model and voice settings.

Anyone may look (``!elevenlabs``, ``!elevenlabs voices``); choosing this server's
voice or changing its settings needs Manage Server (or being the bot's owner).
The API key is never shown, only whether one is set.
"""

from __future__ import annotations

import math
from typing import Any

from discord.ext import commands

from hark import PluginCog
from hark.cog import require_manager
from hark.providers.errors import ProviderError
from hark.text import split_message
from hark_tts_elevenlabs.synthesizer import (
    DEFAULT_SETTINGS,
    NUMERIC_SETTINGS,
    OUTPUT_FORMAT,
    ElevenLabsSynthesizer,
    VoiceInfo,
)

# Longest voice list shown in one answer.
MAX_LISTED = 40

_RESET_WORDS = frozenset({"reset", "default", "clear", "none"})
_TRUE = frozenset({"on", "true", "yes", "1", "enable", "enabled"})
_FALSE = frozenset({"off", "false", "no", "0", "disable", "disabled"})
# What `!elevenlabs set` changes (voice_id/voice_name go through `!elevenlabs voice`).
SETTABLE = ("model", *NUMERIC_SETTINGS, "use_speaker_boost")


def parse_setting(key: str, raw: str) -> Any:
    """Validate a setting typed in a command; ValueError says what is allowed."""
    if key == "use_speaker_boost":
        word = raw.lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ValueError("use_speaker_boost must be on or off")
    if key == "model":
        if not raw or any(c.isspace() for c in raw) or len(raw) > 100:
            raise ValueError("model must be a model id such as eleven_flash_v2_5")
        return raw
    low, high = NUMERIC_SETTINGS[key]
    try:
        number = float(raw)
    except ValueError:
        raise ValueError(f"`{raw}` is not a number") from None
    if not (math.isfinite(number) and low <= number <= high):
        raise ValueError(f"{key} must be between {low:g} and {high:g}")
    return number


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _shown(value: Any) -> str:
    """A setting's value as `!elevenlabs` shows it (None: the voice's own default)."""
    return "voice default" if value is None else _format_value(value)


class ElevenLabsCog(PluginCog, name="ElevenLabs"):
    """ElevenLabs voices: this server's voice, model and voice settings."""

    default_settings = DEFAULT_SETTINGS

    def synthesizer(self) -> ElevenLabsSynthesizer | None:
        """This plugin's synthesizer instance (the one the bot speaks with)."""
        return self.provider(ElevenLabsSynthesizer)

    async def _require_synthesizer(
        self, ctx: commands.Context[Any]
    ) -> ElevenLabsSynthesizer | None:
        synth = self.synthesizer()
        if synth is None:
            await ctx.reply("The ElevenLabs synthesizer is not loaded.", mention_author=False)
        return synth

    def _voice_label(self, synth: ElevenLabsSynthesizer, guild_id: int | None) -> str:
        voice_id = synth.voice_for(guild_id, required=False)
        if not voice_id:
            return "none chosen"
        name = None
        if self.settings.guild(guild_id).get("voice_id") == voice_id:
            name = self.settings.guild(guild_id).get("voice_name")
        label = f"**{name}** (`{voice_id}`)" if name else f"`{voice_id}`"
        return f"{label}, {synth.voice_origin(guild_id)}"

    # -- commands ----------------------------------------------------------

    @commands.group(name="elevenlabs", invoke_without_command=True)
    async def elevenlabs(self, ctx: commands.Context[Any]) -> None:
        """Show this server's ElevenLabs voice, model and settings (never the key)."""
        synth = await self._require_synthesizer(ctx)
        if synth is None:
            return
        guild_id = ctx.guild.id if ctx.guild else None
        model = synth.model_for(guild_id)
        settings = ", ".join(
            f"{key} {_shown(synth.setting(key, guild_id))}"
            for key in (*NUMERIC_SETTINGS, "use_speaker_boost")
        )
        lines = [
            "**ElevenLabs**",
            f"API: `{synth.public_base_url}`, key {'set' if synth.has_key else 'not set'}",
            f"Voice: {self._voice_label(synth, guild_id)}",
            f"Model: `{model}`",
            f"Voice settings: {settings}",
            f"Audio: {OUTPUT_FORMAT}, played at 48 kHz stereo",
        ]
        reason = synth.unavailable_reason()
        if reason:
            lines.append(f"⚠ Not usable: {reason}.")
        prefix = ctx.clean_prefix
        lines.append(
            f"`{prefix}elevenlabs voices` lists voices; `{prefix}elevenlabs voice NAME` and"
            f" `{prefix}elevenlabs set KEY VALUE` change this server's (Manage Server)."
        )
        await ctx.send("\n".join(lines))

    @elevenlabs.command(name="voices")
    async def voices(self, ctx: commands.Context[Any], *, filter: str = "") -> None:
        """List the account's voices (optionally only those matching FILTER)."""
        synth = await self._require_synthesizer(ctx)
        if synth is None:
            return
        try:
            voices = await synth.list_voices()
        except ProviderError as exc:
            await ctx.reply(exc.user_message, mention_author=False)
            return
        guild_id = ctx.guild.id if ctx.guild else None
        current = synth.voice_for(guild_id, required=False)
        words = filter.lower().split()
        matching = [
            v
            for v in voices
            if all(
                w in " ".join([v.name, v.voice_id, v.category or "", *v.labels]).lower()
                for w in words
            )
        ]
        if not voices:
            await ctx.reply("This ElevenLabs account has no voices.", mention_author=False)
            return
        if not matching:
            await ctx.reply(
                f"No voice matches `{filter}` ({len(voices)} voices in all).",
                mention_author=False,
            )
            return
        what = f" matching `{filter}`" if words else ""
        lines = [f"**ElevenLabs voices**{what}: {len(matching)} of {len(voices)}"]
        chosen = [v for v in matching if v.voice_id == current]
        ordered = chosen + [v for v in matching if v.voice_id != current]
        where = "this server" if guild_id else "here"
        for voice in ordered[:MAX_LISTED]:
            about = ", ".join(x for x in (voice.category, *voice.labels) if x)
            kind = f" ({about})" if about else ""
            mark = f" ← {where}" if voice.voice_id == current else ""
            lines.append(f"**{voice.name}** `{voice.voice_id}`{kind}{mark}")
        if len(ordered) > MAX_LISTED:
            lines.append(
                f"…and {len(ordered) - MAX_LISTED} more; narrow the list with"
                f" `{ctx.clean_prefix}elevenlabs voices FILTER`."
            )
        if current and current not in {v.voice_id for v in voices}:
            lines.append(f"⚠ {where.capitalize()} uses `{current}`, which is not in this list.")
        for part in split_message("\n".join(lines)):
            await ctx.send(part)

    @elevenlabs.command(name="voice")
    async def voice(self, ctx: commands.Context[Any], *, name: str | None = None) -> None:
        """Show, choose (by id or name) or `reset` this server's voice (Manage Server)."""
        synth = await self._require_synthesizer(ctx)
        if synth is None:
            return
        guild_id = ctx.guild.id if ctx.guild else None
        if name is None:
            await ctx.reply(
                f"This server's voice: {self._voice_label(synth, guild_id)}.",
                mention_author=False,
            )
            return
        await require_manager(ctx)
        assert ctx.guild is not None
        scope = self.settings.guild(ctx.guild.id)
        name = name.strip()
        if name.lower() in _RESET_WORDS:
            await scope.clear("voice_id")
            await scope.clear("voice_name")
            await ctx.reply(
                f"This server's voice is back to {self._voice_label(synth, ctx.guild.id)}.",
                mention_author=False,
            )
            return
        try:
            found = await self._resolve_voice(synth, name)
        except ProviderError as exc:
            await ctx.reply(exc.user_message, mention_author=False)
            return
        if isinstance(found, list):
            listed = ", ".join(f"**{v.name}** `{v.voice_id}`" for v in found[:10])
            await ctx.reply(
                f"Several voices are called `{name}`: {listed}. Choose one by its id.",
                mention_author=False,
            )
            return
        if found is None:
            await ctx.reply(
                f"ElevenLabs has no voice `{name}`; see `{ctx.clean_prefix}elevenlabs voices`.",
                mention_author=False,
            )
            return
        await scope.set("voice_id", found.voice_id)
        await scope.set("voice_name", found.name)
        await ctx.reply(
            f"This server now speaks with **{found.name}** (`{found.voice_id}`).",
            mention_author=False,
        )

    async def _resolve_voice(
        self, synth: ElevenLabsSynthesizer, name: str
    ) -> VoiceInfo | list[VoiceInfo] | None:
        """A voice by id, else by name (case-insensitive); a list when a name is ambiguous."""
        voices = await synth.list_voices()
        for voice in voices:
            if voice.voice_id == name:
                return voice
        named = [v for v in voices if v.name.casefold() == name.casefold()]
        if len(named) == 1:
            return named[0]
        if named:
            return named
        if name.isalnum():
            # A voice the listing leaves out (e.g. from the shared library) is still usable.
            return await synth.get_voice(name)
        return None

    @elevenlabs.command(name="set")
    async def set_(self, ctx: commands.Context[Any], key: str, value: str) -> None:
        """Set model, stability, similarity_boost, style, speed or use_speaker_boost for this
        server, or `reset` it (Manage Server)."""
        synth = await self._require_synthesizer(ctx)
        if synth is None:
            return
        await require_manager(ctx)
        assert ctx.guild is not None
        key = key.lower()
        if key not in SETTABLE:
            await ctx.reply(
                f"`{key}` is not a setting; use one of: {', '.join(SETTABLE)}.",
                mention_author=False,
            )
            return
        scope = self.settings.guild(ctx.guild.id)
        if value.lower() in _RESET_WORDS:
            await scope.clear(key)
            value = synth.model_for(ctx.guild.id) if key == "model" else scope.get(key)
            await ctx.reply(
                f"{key} is back to {_shown(value)} in this server.", mention_author=False
            )
            return
        try:
            parsed = parse_setting(key, value)
        except ValueError as exc:
            await ctx.reply(f"{exc}.", mention_author=False)
            return
        await scope.set(key, parsed)
        await ctx.reply(
            f"{key} is now {_format_value(parsed)} in this server.", mention_author=False
        )
