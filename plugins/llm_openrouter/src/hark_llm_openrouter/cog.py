"""``!openrouter``: what the plugin talks to, which models it offers, and per-server choices.

Anyone may look; changing this server's model or sampling settings needs Manage
Server (or being the bot's owner). The API key is never shown, only whether one is set.
"""

from __future__ import annotations

import math
from typing import Any

from discord.ext import commands

from hark import PluginCog
from hark.cog import require_manager
from hark.providers.errors import ProviderError
from hark.text import split_message
from hark_llm_openrouter.generator import OpenRouterGenerator

# Longest model list shown in one answer; a filter narrows longer ones.
MAX_LISTED = 40

_RESET_WORDS = frozenset({"reset", "default", "clear", "none"})


def _parse_setting(key: str, raw: str) -> float | int:
    """Validate a sampling setting typed in a command; ValueError says what is allowed."""
    if key == "max_tokens":
        value = int(raw)
        if not 1 <= value <= 1_000_000:
            raise ValueError("max_tokens must be a whole number of at least 1")
        return value
    number = float(raw)
    low, high = (0.0, 2.0) if key == "temperature" else (0.0, 1.0)
    if not (math.isfinite(number) and low <= number <= high):
        raise ValueError(f"{key} must be between {low:g} and {high:g}")
    return number


class OpenRouterCog(PluginCog, name="OpenRouter"):
    """OpenRouter / OpenAI-compatible LLM: endpoint, models and this server's settings."""

    def generator(self) -> OpenRouterGenerator | None:
        """This plugin's generator instance (the one the bot generates with)."""
        return self.provider(OpenRouterGenerator)

    async def _require_generator(self, ctx: commands.Context[Any]) -> OpenRouterGenerator | None:
        generator = self.generator()
        if generator is None:
            await ctx.reply("The OpenRouter generator is not loaded.", mention_author=False)
        return generator

    def _model_origin(self, guild_id: int | None) -> str:
        scope = self.settings.guild(guild_id)
        if guild_id is not None and scope.is_set("model"):
            return "set for this server"
        if self.settings.global_().is_set("model"):
            return "bot-wide setting"
        return "default, OPENROUTER_MODEL"

    # -- commands ----------------------------------------------------------

    @commands.group(name="openrouter", invoke_without_command=True)
    async def openrouter(self, ctx: commands.Context[Any]) -> None:
        """Show the endpoint, this server's model and settings (never the key)."""
        generator = await self._require_generator(ctx)
        if generator is None:
            return
        guild_id = ctx.guild.id if ctx.guild else None
        key = "set" if generator.has_key else "not set"
        if not generator.has_key and not generator.needs_key:
            key += " (not needed for this endpoint)"
        lines = [
            "**OpenRouter**" if generator.is_openrouter else "**OpenAI-compatible endpoint**",
            f"Endpoint: `{generator.public_base_url}`",
            f"API key: {key}",
            f"Model: `{generator.model_for(guild_id)}` ({self._model_origin(guild_id)})",
        ]
        shown = []
        for name in OpenRouterGenerator.default_settings:
            value = generator.setting(name, guild_id)
            shown.append(f"{name} {'model default' if value is None else value}")
        lines.append("Settings: " + ", ".join(shown))
        reason = generator.unavailable_reason()
        if reason:
            lines.append(f"⚠ Not usable: {reason}.")
        prefix = ctx.clean_prefix
        lines.append(
            f"`{prefix}openrouter models [filter]` lists models; `{prefix}openrouter model NAME`"
            f" and `{prefix}openrouter set temperature|max_tokens|top_p VALUE` change this"
            " server's choice (Manage Server)."
        )
        await ctx.send("\n".join(lines))

    @openrouter.command(name="models")
    async def models(self, ctx: commands.Context[Any], *, filter: str = "") -> None:
        """List the endpoint's models (optionally only those matching FILTER)."""
        generator = await self._require_generator(ctx)
        if generator is None:
            return
        try:
            models = await generator.list_models()
        except ProviderError as exc:
            await ctx.reply(exc.user_message, mention_author=False)
            return
        guild_id = ctx.guild.id if ctx.guild else None
        current = generator.model_for(guild_id)
        words = filter.lower().split()
        matching = [m for m in models if all(w in m.lower() for w in words)]
        where = "this server" if guild_id else "here"
        if not matching:
            await ctx.reply(
                f"No model at {generator.host} matches `{filter}` ({len(models)} models in all).",
                mention_author=False,
            )
            return
        what = f" matching `{filter}`" if words else ""
        lines = [f"**Models at {generator.host}**{what}: {len(matching)} of {len(models)}"]
        if current in matching:
            # This server's model always makes the cut, first.
            matching.remove(current)
            matching.insert(0, current)
        for model in matching[:MAX_LISTED]:
            mark = f" ← {where}" if model == current else ""
            lines.append(f"`{model}`{mark}")
        if len(matching) > MAX_LISTED:
            lines.append(
                f"…and {len(matching) - MAX_LISTED} more; narrow the list with"
                f" `{ctx.clean_prefix}openrouter models FILTER`."
            )
        if current not in models:
            lines.append(f"⚠ {where.capitalize()} uses `{current}`, which is not in this list.")
        for part in split_message("\n".join(lines)):
            await ctx.send(part)

    @openrouter.command(name="model")
    async def model(self, ctx: commands.Context[Any], name: str | None = None) -> None:
        """Show, set or `reset` this server's model (setting needs Manage Server)."""
        generator = await self._require_generator(ctx)
        if generator is None:
            return
        guild_id = ctx.guild.id if ctx.guild else None
        if name is None:
            await ctx.reply(
                f"This server uses `{generator.model_for(guild_id)}`"
                f" ({self._model_origin(guild_id)}).",
                mention_author=False,
            )
            return
        await require_manager(ctx)
        assert ctx.guild is not None
        if name.lower() in _RESET_WORDS:
            await generator.set_model(ctx.guild.id, None)
            await ctx.reply(
                f"This server's model is back to `{generator.model_for(ctx.guild.id)}`.",
                mention_author=False,
            )
            return
        note = ""
        try:
            known = await generator.list_models()
        except ProviderError:
            note = f" (could not check it against {generator.host}'s model list)"
        else:
            if name not in known:
                await ctx.reply(
                    f"{generator.host} has no model `{name}`; see"
                    f" `{ctx.clean_prefix}openrouter models`.",
                    mention_author=False,
                )
                return
        await generator.set_model(ctx.guild.id, name)
        await ctx.reply(f"This server now uses `{name}`{note}.", mention_author=False)

    @openrouter.command(name="set")
    async def set_(self, ctx: commands.Context[Any], key: str, value: str) -> None:
        """Set temperature, max_tokens or top_p for this server, or `reset` it (Manage Server)."""
        generator = await self._require_generator(ctx)
        if generator is None:
            return
        await require_manager(ctx)
        assert ctx.guild is not None
        key = key.lower()
        if key not in OpenRouterGenerator.default_settings:
            names = ", ".join(OpenRouterGenerator.default_settings)
            await ctx.reply(f"`{key}` is not a setting; use one of: {names}.", mention_author=False)
            return
        scope = self.settings.guild(ctx.guild.id)
        if value.lower() in _RESET_WORDS:
            await scope.clear(key)
            await ctx.reply(
                f"{key} is back to {generator.setting(key, ctx.guild.id)} in this server.",
                mention_author=False,
            )
            return
        try:
            parsed = _parse_setting(key, value)
        except ValueError as exc:
            message = str(exc) if "must" in str(exc) else f"`{value}` is not a number"
            await ctx.reply(f"{message}.", mention_author=False)
            return
        await scope.set(key, parsed)
        await ctx.reply(f"{key} is now {parsed} in this server.", mention_author=False)
