"""``!whisper``: what transcribes this server's voice, and per-server choices.

Anyone may look; changing the language, the model or the mode needs Manage Server
(or being the bot's owner). The OpenAI key is never shown, only whether one is set.
"""

from __future__ import annotations

from typing import Any

from discord.ext import commands

from hark import PluginCog
from hark.cog import require_manager
from hark.control import ControlError
from hark.providers import Capability
from hark.providers.errors import ConfigurationError
from hark_stt_whisper.base import ORIGIN_DEFAULT, WhisperTranscriber
from hark_stt_whisper.config import DEFAULT_SETTINGS, MODES, language_codes, normalize_language
from hark_stt_whisper.local import LocalWhisperTranscriber
from hark_stt_whisper.models import canonical, describe, is_english_only
from hark_stt_whisper.remote import OpenAIWhisperTranscriber

_RESET_WORDS = frozenset({"reset", "default", "clear", "none"})


class WhisperCog(PluginCog, name="Whisper"):
    """Whisper speech to text: model, language and mode for this server."""

    default_settings = DEFAULT_SETTINGS

    # -- helpers -----------------------------------------------------------

    def local(self) -> LocalWhisperTranscriber | None:
        return self.provider(LocalWhisperTranscriber)

    def remote(self) -> OpenAIWhisperTranscriber | None:
        return self.provider(OpenAIWhisperTranscriber)

    async def _reply(self, ctx: commands.Context[Any], text: str) -> None:
        await ctx.reply(text, mention_author=False)

    def _in_use(self, guild_id: int | None) -> tuple[Any, str]:
        """The transcriber serving this server and how it was picked."""
        control = self.bot.control
        provider = control.provider_for(Capability.TRANSCRIBE, guild_id)
        _, origin = control.chosen(Capability.TRANSCRIBE, guild_id)
        how = {"server": "chosen here", "global": "global default", "config": "bot.toml"}.get(
            origin, "default"
        )
        return provider, how

    def _language_line(self, guild_id: int | None) -> str:
        any_provider = self.local() or self.remote()
        if any_provider is None:
            return "Language: unknown"
        value, origin = any_provider.resolve("language", guild_id)
        language = normalize_language(value)
        if language is not None:
            return f"Language: `{language}` ({origin})"
        local = self.local()
        if value is None and local is not None and is_english_only(local.model_for(guild_id)):
            return "Language: `en` (the local model is English-only)"
        return f"Language: auto-detect ({origin})"

    # -- commands ----------------------------------------------------------

    @commands.group(name="whisper", invoke_without_command=True)
    async def whisper(self, ctx: commands.Context[Any]) -> None:
        """Show the mode, model and language used in this server (never the key)."""
        guild_id = ctx.guild.id if ctx.guild else None
        local, remote = self.local(), self.remote()
        provider, how = self._in_use(guild_id)
        lines = ["**Whisper speech to text**"]
        if isinstance(provider, WhisperTranscriber):
            lines.append(f"Mode here: **{provider.mode}** (`{provider.id}`, {how})")
        elif provider is not None:
            lines.append(
                f"Mode here: not Whisper — this server transcribes with `{provider.id}` ({how})"
            )
        else:
            lines.append("Mode here: none (no transcriber is enabled in this server)")
        if local is not None:
            spec = local.model_for(guild_id)
            value, origin = local.resolve("model", guild_id)
            origin = origin if value else ORIGIN_DEFAULT
            state = "loaded" if local.is_loaded(spec) else "not loaded yet"
            lines.append(f"Local model: `{spec}` — {describe(spec)} ({origin}; {state})")
        lines.append(self._language_line(guild_id))
        if remote is not None:
            key = "set" if remote.has_key else "not set"
            if not remote.has_key and not remote.needs_key:
                key += " (not needed for this endpoint)"
            lines.append(
                f"OpenAI: model `{remote.model_for(guild_id)}` at `{remote.public_base_url}`,"
                f" API key {key}"
            )
        for candidate in (local, remote):
            reason = candidate.unavailable_reason() if candidate is not None else None
            if reason:
                lines.append(f"⚠ `{candidate.id}` can't be used: {reason}.")
        prefix = ctx.clean_prefix
        lines.append(
            f"Change (Manage Server): `{prefix}whisper language CODE|auto|reset`,"
            f" `{prefix}whisper model NAME|reset`, `{prefix}whisper openai-model NAME|reset`,"
            f" `{prefix}whisper mode local|openai`."
        )
        await ctx.send("\n".join(lines))

    @whisper.command(name="language")
    async def language(self, ctx: commands.Context[Any], code: str | None = None) -> None:
        """Show, set (ISO 639-1 code or `auto`) or `reset` this server's language."""
        guild_id = ctx.guild.id if ctx.guild else None
        if code is None:
            await self._reply(ctx, self._language_line(guild_id))
            return
        await require_manager(ctx)
        assert ctx.guild is not None
        scope = self.settings.guild(ctx.guild.id)
        code = code.strip().lower()
        if code in _RESET_WORDS:
            await scope.clear("language")
            await self._reply(ctx, "Back to the default. " + self._language_line(ctx.guild.id))
            return
        if normalize_language(code) is None:
            await scope.set("language", "auto")
            await self._reply(ctx, "This server's speech language is now detected automatically.")
            return
        if code not in language_codes():
            await self._reply(
                ctx,
                f"`{code}` is not a language Whisper knows; use an ISO 639-1 code such as"
                " `en`, `fr` or `de`, or `auto`.",
            )
            return
        await scope.set("language", code)
        note = ""
        local = self.local()
        if code != "en" and local is not None and is_english_only(local.model_for(ctx.guild.id)):
            note = (
                " Note: the local model here is English-only and will still transcribe English;"
                f" choose a multilingual model with `{ctx.clean_prefix}whisper model`."
            )
        await self._reply(ctx, f"This server's speech language is now `{code}`.{note}")

    @whisper.command(name="model")
    async def model(self, ctx: commands.Context[Any], *, spec: str | None = None) -> None:
        """Show, set or `reset` this server's local model (setting needs Manage Server)."""
        local = self.local()
        if local is None:
            await self._reply(ctx, "The local Whisper transcriber is not loaded.")
            return
        guild_id = ctx.guild.id if ctx.guild else None
        choices = ", ".join(f"`{m}`" for m in local.allowed_models())
        if spec is None:
            current = local.model_for(guild_id)
            await self._reply(
                ctx,
                f"This server's local model is `{current}` ({describe(current)})."
                f" Choices: {choices}.",
            )
            return
        await require_manager(ctx)
        assert ctx.guild is not None
        scope = self.settings.guild(ctx.guild.id)
        spec = spec.strip()
        if spec.lower() in _RESET_WORDS:
            await scope.clear("model")
            await self._reply(
                ctx, f"This server's local model is back to `{local.model_for(ctx.guild.id)}`."
            )
            return
        if not local.is_allowed(spec):
            await self._reply(
                ctx,
                f"`{spec}` is not one of the models this bot offers: {choices}. The bot's"
                " operator can add more with WHISPER_MODELS.",
            )
            return
        spec = canonical(spec)
        try:
            async with ctx.typing():
                await local.check(spec)
        except ConfigurationError as exc:
            await self._reply(ctx, f"Could not use that model: {exc.message}.")
            return
        if spec == local.default_model():
            await scope.clear("model")
        else:
            await scope.set("model", spec)
        await self._reply(ctx, f"This server's local model is now `{spec}` ({describe(spec)}).")

    @whisper.command(name="openai-model", aliases=["openai_model"])
    async def openai_model(self, ctx: commands.Context[Any], name: str | None = None) -> None:
        """Show, set or `reset` this server's OpenAI transcription model (Manage Server)."""
        remote = self.remote()
        if remote is None:
            await self._reply(ctx, "The OpenAI Whisper transcriber is not loaded.")
            return
        guild_id = ctx.guild.id if ctx.guild else None
        if name is None:
            await self._reply(ctx, f"This server's OpenAI model is `{remote.model_for(guild_id)}`.")
            return
        await require_manager(ctx)
        assert ctx.guild is not None
        scope = self.settings.guild(ctx.guild.id)
        if name.lower() in _RESET_WORDS:
            await scope.clear("openai_model")
        else:
            await scope.set("openai_model", name.strip())
        await self._reply(
            ctx, f"This server's OpenAI model is now `{remote.model_for(ctx.guild.id)}`."
        )

    @whisper.command(name="mode")
    async def mode(self, ctx: commands.Context[Any], mode: str | None = None) -> None:
        """Transcribe here locally or through OpenAI (Manage Server to change).

        The same switch as `!plugins use transcribe stt_whisper:local|openai`."""
        guild_id = ctx.guild.id if ctx.guild else None
        if mode is None:
            provider, how = self._in_use(guild_id)
            if isinstance(provider, WhisperTranscriber):
                text = f"This server transcribes **{provider.mode}** (`{provider.id}`, {how})."
            elif provider is not None:
                text = f"This server transcribes with `{provider.id}`, not Whisper ({how})."
            else:
                text = "No transcriber is enabled in this server."
            await self._reply(ctx, text)
            return
        await require_manager(ctx)
        assert ctx.guild is not None
        mode = mode.strip().lower()
        target = {"local": self.local(), "openai": self.remote(), "remote": self.remote()}.get(mode)
        if mode not in (*MODES, "remote"):
            await self._reply(ctx, f"`{mode}` is not a mode; use `local` or `openai`.")
            return
        if target is None:
            await self._reply(ctx, f"The {mode} Whisper transcriber is not loaded.")
            return
        reason = target.unavailable_reason()
        if reason:
            await self._reply(ctx, f"`{target.id}` can't be used: {reason}. Nothing changed.")
            return
        try:
            await self.bot.control.choose(Capability.TRANSCRIBE, target.id, ctx.guild.id)
        except ControlError as exc:
            await self._reply(ctx, str(exc))
            return
        await self._reply(ctx, f"transcribe now uses `{target.id}` in this server.")


__all__ = ["WhisperCog"]
