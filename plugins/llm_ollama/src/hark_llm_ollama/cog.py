"""``!ollama``: the Ollama server, its models and this server's options.

Anyone may look (``!ollama``, ``!ollama models``, ``/ollama status``,
``/ollama models``); changing this server's model or options needs Manage Server
(or being the bot's owner).
"""

from __future__ import annotations

import asyncio
import math
import re
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from hark import Capability, PluginCog
from hark.cog import can_manage, manage_server
from hark.providers.errors import ProviderError
from hark.text import split_message
from hark_llm_ollama.generator import OllamaGenerator, OllamaModel, same_model

if TYPE_CHECKING:
    from hark.bot import HarkBot

# How long the status command waits for the Ollama server before calling it unreachable.
STATUS_TIMEOUT = 5.0

_RESET_WORDS = frozenset({"reset", "default", "clear", "unset", "none"})
# Go durations as Ollama parses them: "5m", "1h30m", "90s", "-1m"...
_DURATION = re.compile(r"^-?(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")

SETTING_HELP = {
    "temperature": "sampling temperature, 0 to 2 (lower = more predictable)",
    "num_ctx": "context window in tokens, e.g. 8192 (more history, more memory)",
    "keep_alive": "how long the model stays loaded: 10m, 1h, -1 (always), 0 (unload at once)",
    "think": "thinking models: on, off, low, medium or high",
}


def parse_setting(key: str, text: str) -> Any:
    """A setting value typed in Discord, checked; raises ``ValueError`` with a readable reason."""
    text = text.strip()
    if key == "temperature":
        try:
            value = float(text)
        except ValueError:
            raise ValueError("temperature must be a number between 0 and 2") from None
        if not (math.isfinite(value) and 0.0 <= value <= 2.0):
            raise ValueError("temperature must be a number between 0 and 2")
        return value
    if key == "num_ctx":
        try:
            value = int(text)
        except ValueError:
            raise ValueError("num_ctx must be a whole number of tokens, e.g. 8192") from None
        if not 256 <= value <= 1_048_576:
            raise ValueError("num_ctx must be between 256 and 1048576 tokens")
        return value
    if key == "keep_alive":
        if re.fullmatch(r"-?\d+", text):
            return int(text)
        if _DURATION.match(text):
            return text
        raise ValueError("keep_alive must be a duration such as 10m or 1h, or -1 / 0")
    if key == "think":
        lowered = text.lower()
        if lowered in ("on", "true", "yes"):
            return True
        if lowered in ("off", "false", "no"):
            return False
        if lowered in ("low", "medium", "high"):
            return lowered
        raise ValueError("think must be on, off, low, medium or high")
    raise ValueError(f"unknown setting `{key}`; one of: {', '.join(SETTING_HELP)}")


def _show(value: Any) -> str:
    if value is None:
        return "default"
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"`{value}`"


class OllamaCog(PluginCog, name="Ollama"):
    """The Ollama server: models and per-server options."""

    def __init__(self, bot: HarkBot) -> None:
        super().__init__(bot)
        self._fallback: OllamaGenerator | None = None

    # -- helpers -----------------------------------------------------------

    @property
    def generator(self) -> OllamaGenerator:
        """This plugin's generator, as the core registered it (same settings, same client)."""
        provider = self.provider(OllamaGenerator)
        if provider is not None:
            return provider
        if self._fallback is None:
            self._fallback = OllamaGenerator()
            self._fallback.plugin_id = self.plugin_id
            self._fallback.bind(self.settings)
        return self._fallback

    def _in_use_here(self, guild_id: int | None) -> bool:
        control = getattr(self.bot, "control", None)
        if control is None:
            return True
        return control.provider_for(Capability.GENERATE, guild_id) is self.generator

    async def _models_or_error(self, *, quick: bool) -> tuple[list[OllamaModel] | None, str]:
        generator = self.generator
        try:
            if quick:
                async with asyncio.timeout(STATUS_TIMEOUT):
                    return await generator.fetch_models(), ""
            return await generator.models_info(), ""
        except TimeoutError:
            return None, f"Ollama at `{generator.public_host}` did not answer in time"
        except ProviderError as exc:
            return None, exc.message

    # -- renderers (shared by prefix and slash commands) -------------------

    async def render_status(self, guild_id: int | None) -> str:
        generator = self.generator
        model = generator.model_for(guild_id)
        lines = [f"**Ollama** at `{generator.public_host}`"]
        lines.append(f"Model here: `{model}` ({generator.model_source(guild_id)})")
        options = " · ".join(
            f"{key} {_show(generator.setting(key, guild_id))}" for key in SETTING_HELP
        )
        lines.append(f"Options: {options}")
        models, error = await self._models_or_error(quick=True)
        if models is None:
            lines.append(f"Server: not reachable ({error})")
        else:
            pulled = any(same_model(m.name, model) for m in models)
            mark = (
                f"`{model}` is pulled"
                if pulled
                else f"`{model}` is **not pulled**: run `ollama pull {model}` on the server"
            )
            lines.append(f"Server: reachable, {len(models)} model(s); {mark}")
        if guild_id is not None and not self._in_use_here(guild_id):
            lines.append(
                f"Replies here come from another provider; "
                f"`!plugins use generate {generator.id}` switches to Ollama."
            )
        return "\n".join(lines)

    async def render_models(self, guild_id: int | None) -> str:
        generator = self.generator
        current = generator.model_for(guild_id)
        models, error = await self._models_or_error(quick=False)
        if models is None:
            return f"Couldn't list the models: {error}."
        if not models:
            return (
                f"The Ollama server at `{generator.public_host}` has no models yet. "
                f"Pull one on the server, e.g. `ollama pull {current}`."
            )
        lines = [f"**Models on Ollama** (`{generator.public_host}`)"]
        found = False
        for model in models:
            about = model.describe()
            about = f" — {about}" if about else ""
            if same_model(model.name, current):
                found = True
                lines.append(f"• **`{model.name}`**{about} ← used here")
            else:
                lines.append(f"• `{model.name}`{about}")
        if not found:
            lines.append(
                f"⚠ This server uses `{current}`, which is not on the server: "
                f"`ollama pull {current}` or choose another with `!ollama model NAME`."
            )
        return "\n".join(lines)

    async def _send(self, ctx: commands.Context[Any], text: str) -> None:
        for part in split_message(text):
            await ctx.send(part)

    # -- prefix commands -------------------------------------------------

    @commands.group(name="ollama", invoke_without_command=True)
    async def ollama(self, ctx: commands.Context[Any]) -> None:
        """Show the Ollama server, this server's model and options."""
        async with ctx.typing():
            text = await self.render_status(ctx.guild.id if ctx.guild else None)
        await self._send(ctx, text)

    @ollama.command(name="models")
    async def models(self, ctx: commands.Context[Any]) -> None:
        """List the models on the Ollama server (the one used here is marked)."""
        async with ctx.typing():
            text = await self.render_models(ctx.guild.id if ctx.guild else None)
        await self._send(ctx, text)

    @ollama.command(name="model")
    @commands.guild_only()
    async def model(self, ctx: commands.Context[Any], name: str | None = None) -> None:
        """Show this server's model; with NAME, use that model here, `reset` for the
        default (Manage Server)."""
        assert ctx.guild is not None
        generator = self.generator
        if name is None:
            current = generator.model_for(ctx.guild.id)
            await ctx.reply(
                f"This server uses `{current}` ({generator.model_source(ctx.guild.id)}).",
                mention_author=False,
            )
            return
        if not await can_manage(self.bot, ctx.author, ctx.guild):
            raise commands.MissingPermissions(["manage_guild"])
        if name.lower() in _RESET_WORDS:
            await self.settings.guild(ctx.guild.id).clear("model")
            await ctx.reply(
                f"This server now uses the default model, `{generator.model_for(ctx.guild.id)}`.",
                mention_author=False,
            )
            return
        models, error = await self._models_or_error(quick=True)
        if models is not None:
            match = next((m.name for m in models if same_model(m.name, name)), None)
            if match is None:
                await ctx.reply(
                    f"`{name}` is not on the Ollama server. Pull it there with "
                    f"`ollama pull {name}`, or pick one from `{ctx.clean_prefix}ollama models`.",
                    mention_author=False,
                )
                return
        await self.settings.guild(ctx.guild.id).set("model", name)
        note = "" if models is not None else f" (could not check the server: {error})"
        await ctx.reply(f"This server now uses `{name}`.{note}", mention_author=False)

    @ollama.command(name="set")
    @manage_server()
    async def set_option(self, ctx: commands.Context[Any], key: str, *, value: str) -> None:
        """Set an option here: temperature, num_ctx, keep_alive, think (`reset` clears)."""
        assert ctx.guild is not None
        key = key.lower()
        if key not in SETTING_HELP:
            known = ", ".join(f"`{k}`" for k in SETTING_HELP)
            await ctx.reply(f"Unknown option `{key}`; one of: {known}.", mention_author=False)
            return
        scope = self.settings.guild(ctx.guild.id)
        if value.strip().lower() in _RESET_WORDS:
            await scope.clear(key)
            shown = _show(self.generator.setting(key, ctx.guild.id))
            await ctx.reply(f"`{key}` is back to {shown} here.", mention_author=False)
            return
        try:
            parsed = parse_setting(key, value)
        except ValueError as exc:
            await ctx.reply(f"{exc}.", mention_author=False)
            return
        await scope.set(key, parsed)
        await ctx.reply(f"`{key}` is now {_show(parsed)} here.", mention_author=False)

    # -- slash commands --------------------------------------------------

    slash = app_commands.Group(name="ollama", description="The Ollama server and its models")

    @slash.command(name="status", description="The Ollama server, this server's model and options")
    async def slash_status(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        text = await self.render_status(interaction.guild_id)
        for part in split_message(text):
            await interaction.followup.send(part)

    @slash.command(name="models", description="List the models on the Ollama server")
    async def slash_models(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        text = await self.render_models(interaction.guild_id)
        for part in split_message(text):
            await interaction.followup.send(part)
