"""`!config` and `/config`: every declared plugin's settings, generated from its model.

    !config                                 plugins that have settings
    !config PLUGIN                          each value here and where it came from
    !config PLUGIN KEY                      one setting: value, origin, what it accepts
    !config PLUGIN KEY VALUE [--channel|--global|--me]    set it (this server by default)
    !config PLUGIN KEY reset [--channel|--global|--me]    back to the inherited value

Anyone may look. Server and channel values need Manage Server (or the bot's
owner), bot-wide ones the bot's owner; ``--me`` sets a member's own value, for
settings that allow it. A plugin switched off in a server can still be
configured there by its admins (so it is ready when switched on). Secrets show
only as set / not set. Replies never ping and are split at Discord's limits.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from hark.cog import PluginCog, can_manage, require_manager
from hark.logs import redact
from hark.plugin import CHANNEL, GLOBAL, RESET_WORDS, SERVER, USER, SettingField
from hark.providers.errors import ProviderError
from hark.settings import Origin, SettingError, coerce, field_of
from hark.text import split_message

if TYPE_CHECKING:
    from hark.bot import HarkBot
    from hark.plugins import PluginInfo

log = logging.getLogger(__name__)

NO_PINGS = discord.AllowedMentions.none()
# Trailing flags of `!config PLUGIN KEY VALUE`: where the value applies.
SCOPE_FLAGS = {"--server": SERVER, "--channel": CHANNEL, "--global": GLOBAL, "--me": USER}
_WHERE = {GLOBAL: "bot-wide", SERVER: "in this server", CHANNEL: "in this channel", USER: "for you"}
_CAN_BE_SET = {GLOBAL: "bot-wide (owner)", SERVER: "per server", CHANNEL: "per channel"}
_CAN_BE_SET[USER] = "per member (`--me`)"
_MAX_SHOWN = 100


async def _check(provider: Any, key: str, value: Any, guild_id: int | None, scope: str) -> Any:
    """``provider.check_setting`` with what its signature takes: ``guild_id`` (None for
    a bot-wide value) and ``scope``; ``check_setting(key, value)`` alone, the first v2
    signature, is kept."""
    check = provider.check_setting
    params = inspect.signature(check).parameters
    any_keyword = any(p.kind is p.VAR_KEYWORD for p in params.values())
    extra: dict[str, Any] = {}
    if "guild_id" in params or any_keyword:
        extra["guild_id"] = None if scope == GLOBAL else guild_id
    if "scope" in params or any_keyword:
        extra["scope"] = scope
    return await check(key, value, **extra)


def _settable(field: SettingField) -> str:
    if not field.scopes:
        return "can be set only in bot.toml or the environment"
    return "can be set " + ", ".join(_CAN_BE_SET[s] for s in field.scopes)


class Refused(Exception):
    """A request that can't be done; the message is the one line to answer with."""


@dataclass(frozen=True, slots=True)
class Here:
    """Who asks, and where: what a value is resolved for and set in."""

    guild_id: int | None
    channel_id: int | None
    user_id: int

    def target(self, scope: str) -> int | None:
        if scope == GLOBAL:
            return None
        if scope == USER:
            return self.user_id
        target = self.guild_id if scope == SERVER else self.channel_id
        if target is None:
            raise Refused("That only works in a server; add `--global` or `--me`.")
        return target


def shown(value: Any) -> str:
    """A value fit for a reply: in backticks, no backticks inside, not too long."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "`on`" if value else "`off`"
    if isinstance(value, list | tuple | set | frozenset):
        value = ", ".join(str(v) for v in value)
    # A URL's password (registered as a secret when the value was read) is never shown.
    text = redact(" ".join(str(value).split()).replace("`", "'"))
    if not text:
        return "empty"
    if len(text) > _MAX_SHOWN:
        text = text[: _MAX_SHOWN - 1] + "…"
    return f"`{text}`"


class ConfigCog(PluginCog, name="Config"):
    """Every plugin's settings: `!config`, `/config`."""

    bot: HarkBot

    async def cog_load(self) -> None:
        # Start-up (the Runtime declared every model when it opened): the bot.toml /
        # environment values a model ignores are logged now, one line each.
        store = self.bot.runtime.settings
        for info in self._declared():
            if info.plugin is not None and info.plugin.settings is not None:
                store.check(info.id)

    # -- finding plugins and settings ---------------------------------------

    def _declared(self) -> list[PluginInfo]:
        """Loaded plugins with settings or secrets, by id."""
        infos = self.bot.runtime.manager.loaded()
        return sorted(
            (i for i in infos if i.plugin is not None and (i.plugin.fields or i.plugin.secrets)),
            key=lambda i: i.id,
        )

    def _plugin(self, name: str) -> PluginInfo:
        declared = self._declared()
        wanted = name.strip().lower()
        for info in declared:
            if info.id == wanted:
                return info
        # `azure` for `tts_azure`, when only one plugin fits.
        short = [i for i in declared if i.id.partition("_")[2] == wanted]
        if len(short) == 1:
            return short[0]
        known = ", ".join(f"`{i.id}`" for i in declared) or "none"
        raise Refused(f"No plugin called `{name}` has settings. Plugins with settings: {known}.")

    def _field(self, info: PluginInfo, key: str) -> SettingField:
        model = info.plugin.settings if info.plugin else None
        if model is None:
            raise Refused(f"`{info.id}` has no settings, only secrets.")
        try:
            return field_of(model, key.strip().lower())
        except SettingError as exc:
            raise Refused(f"`{info.id}`: {exc}.") from None

    # -- what the commands say ----------------------------------------------

    def _resolve(self, info: PluginInfo, here: Here) -> Any:
        return self.bot.runtime.settings.resolve(
            info.id, guild_id=here.guild_id, channel_id=here.channel_id, user_id=here.user_id
        )

    def render_index(self, prefix: str, here: Here) -> str:
        declared = self._declared()
        if not declared:
            return "No installed plugin has settings."
        lines = ["**Plugins with settings**"]
        for info in declared:
            keys = ", ".join(f.name for f in info.plugin.fields) if info.plugin else ""
            notes = []
            if here.guild_id is not None and not self.bot.control.is_enabled(
                info.id, here.guild_id
            ):
                notes.append("off in this server")
            notes += [f"needs {env}" for env in info.missing_secrets]
            note = f" ({'; '.join(notes)})" if notes else ""
            lines.append(f"`{info.id}`{note}: {keys or 'secrets only'}")
        lines.append(f"`{prefix}config PLUGIN` shows a plugin's values and where they come from.")
        return "\n".join(lines)

    def render_plugin(self, info: PluginInfo, prefix: str, here: Here) -> str:
        plugin = info.plugin
        assert plugin is not None
        where = "here" if here.guild_id is not None else "bot-wide"
        lines = [f"**{info.id}** settings {where}"]
        if here.guild_id is not None and not self.bot.control.is_enabled(info.id, here.guild_id):
            lines[0] += " (the plugin is off in this server)"
        if plugin.settings is not None:
            resolved = self._resolve(info, here)
            for field in plugin.fields:
                value = getattr(resolved.values, field.name)
                lines.append(f"`{field.name}` = {shown(value)} ({resolved.origin(field.name)})")
        for secret in plugin.secrets:
            state = "set" if secret.is_set() else "not set"
            need = "" if secret.is_set() or not secret.required else " (required)"
            lines.append(f"secret `{secret.env}`: {state}{need}")
        for provider in info.providers:
            reason = provider.unavailable_reason()
            if reason:
                lines.append(f"⚠ `{provider.id}` is not usable: {reason}")
        if plugin.settings is not None:
            lines.append(
                f"Change one with `{prefix}config {info.id} KEY VALUE` (this server;"
                f" add `--channel`, `--global` or `--me`), `{prefix}config {info.id} KEY reset`"
                " to inherit again."
            )
        return "\n".join(lines)

    def render_field(self, info: PluginInfo, field: SettingField, here: Here) -> str:
        resolved = self._resolve(info, here)
        value = getattr(resolved.values, field.name)
        lines = [
            f"`{info.id}.{field.name}` = {shown(value)} ({resolved.origin(field.name)})",
        ]
        if field.description:
            lines.append(field.description[:1].upper() + field.description[1:])
        details = [f"Accepts {field.allowed()}" + (" or `none`" if field.optional else "")]
        details.append(_settable(field))
        if field.env:
            details.append(f"environment variable `{field.env}`")
        details.append(f"default {shown(field.default)}")
        lines.append("; ".join(details) + ".")
        return "\n".join(lines)

    # -- changing values ----------------------------------------------------

    async def change(self, info: PluginInfo, key: str, text: str, scope: str, here: Here) -> str:
        """Set (or with a reset word, clear) ``key`` in ``scope``; the reply's text.
        The caller has checked the permission for ``scope``."""
        field = self._field(info, key)
        store = self.bot.runtime.settings
        name = f"`{info.id}.{field.name}`"
        if not field.allows(scope):
            raise Refused(f"{name} can't be set {_WHERE[scope]}; it {_settable(field)}.")
        target = here.target(scope)
        if text.strip().lower() in RESET_WORDS:
            removed = await store.reset_value(info.id, field.name, scope, target)
            if removed:
                self._changed(info, field.name, scope, target)
            resolved = self._resolve(info, here)
            now = f"{shown(getattr(resolved.values, field.name))} ({resolved.origin(field.name)})"
            if not removed:
                return f"{name} had no value of its own {_WHERE[scope]}; it is {now}."
            return f"{name} is back to {now} {_WHERE[scope]}."
        model = info.plugin.settings if info.plugin else None
        assert model is not None
        try:
            value = coerce(model, field.name, text)
            for provider in info.providers:
                value = await _check(provider, field.name, value, here.guild_id, scope)
        except (SettingError, ValueError) as exc:
            raise Refused(f"Nothing changed: {_sentence(exc, field.name)}") from None
        except ProviderError as exc:
            raise Refused(
                f"I couldn't check {shown(text.strip())} for {name}, so nothing changed."
                f" {exc.user_message}"
            ) from None
        value = await store.set_value(info.id, field.name, value, scope, target)
        self._changed(info, field.name, scope, target)
        reply = f"{name} is now {shown(value)} {_WHERE[scope]}."
        resolved = self._resolve(info, here)
        origin: Origin = resolved.origin(field.name)
        if origin.rank > Origin(scope).rank:
            current = shown(getattr(resolved.values, field.name))
            reply += f" Here it is still {current} ({origin}), which comes first."
        return reply

    def _changed(self, info: PluginInfo, key: str, scope: str, target: int | None) -> None:
        # Plugins that apply a value once (a connection) can act on it at once.
        self.host.events.emit(
            "settings_changed", plugin_id=info.id, key=key, scope=scope, target_id=target
        )

    async def refusal(self, user: Any, guild: discord.Guild | None, scope: str) -> str | None:
        """Why ``user`` may not set values in ``scope`` (slash commands), or None."""
        if scope == GLOBAL:
            return None if await self.bot.is_owner(user) else "Only the bot's owner can do that."
        if scope in (SERVER, CHANNEL):
            if guild is None:
                return "That only works in a server; use `scope: bot-wide` or `just me`."
            if not await can_manage(self.bot, user, guild):
                return "You need the Manage Server permission to do that."
        return None

    # -- prefix command -------------------------------------------------------

    @commands.command(name="config")
    async def config_command(
        self,
        ctx: commands.Context[Any],
        plugin: str | None = None,
        key: str | None = None,
        *,
        value: str | None = None,
    ) -> None:
        """Show or change a plugin's settings.

        `PLUGIN [KEY [VALUE|reset]] [--channel|--global|--me]`"""
        here = Here(
            guild_id=ctx.guild.id if ctx.guild else None,
            channel_id=ctx.channel.id if ctx.guild else None,
            user_id=ctx.author.id,
        )
        prefix = ctx.clean_prefix
        try:
            if plugin is None:
                text = self.render_index(prefix, here)
            else:
                info = self._plugin(plugin)
                text, scope = _split_flag(value or "")
                if key is None:
                    text = self.render_plugin(info, prefix, here)
                elif not text:
                    text = self.render_field(info, self._field(info, key), here)
                else:
                    await self._require(ctx, scope)
                    text = await self.change(info, key, text, scope, here)
        except Refused as exc:
            text = str(exc)
        parts = split_message(text)
        await ctx.reply(parts[0], mention_author=False, allowed_mentions=NO_PINGS)
        for part in parts[1:]:
            await ctx.send(part, allowed_mentions=NO_PINGS)

    async def _require(self, ctx: commands.Context[Any], scope: str) -> None:
        """The usual command errors (answered by the bot) unless the author may set here."""
        if scope == GLOBAL:
            if not await ctx.bot.is_owner(ctx.author):
                raise commands.NotOwner()
        elif scope in (SERVER, CHANNEL):
            await require_manager(ctx)

    # -- slash command --------------------------------------------------------

    @app_commands.command(name="config", description="Show or change a plugin's settings")
    @app_commands.describe(
        plugin="Plugin id (leave out to list the plugins with settings)",
        key="Setting name (leave out to show them all)",
        value="New value, or reset to inherit again",
        scope="Where the new value applies (default: this server)",
    )
    @app_commands.choices(
        scope=[
            app_commands.Choice(name="this server", value=SERVER),
            app_commands.Choice(name="this channel", value=CHANNEL),
            app_commands.Choice(name="bot-wide (owner)", value=GLOBAL),
            app_commands.Choice(name="just me", value=USER),
        ]
    )
    async def slash_config(
        self,
        interaction: discord.Interaction,
        plugin: str | None = None,
        key: str | None = None,
        value: str | None = None,
        scope: str | None = None,
    ) -> None:
        here = Here(
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id if interaction.guild_id else None,
            user_id=interaction.user.id,
        )
        ephemeral = False
        try:
            if plugin is None:
                text = self.render_index("/", here).replace("`/config PLUGIN`", "`/config plugin`")
            else:
                info = self._plugin(plugin)
                if key is None:
                    text = self.render_plugin(info, self.bot.config.prefix, here)
                elif value is None:
                    text = self.render_field(info, self._field(info, key), here)
                else:
                    scope = scope or SERVER
                    refusal = await self.refusal(interaction.user, interaction.guild, scope)
                    if refusal:
                        raise Refused(refusal)
                    # Checking a value may ask the plugin's service (a voice list):
                    # acknowledge first, Discord allows 3 s for that.
                    await interaction.response.defer(ephemeral=scope == USER)
                    text = await self.change(info, key, value, scope, here)
        except Refused as exc:
            text, ephemeral = str(exc), True
        parts = split_message(text)
        if interaction.response.is_done():
            await interaction.followup.send(parts[0], allowed_mentions=NO_PINGS)
        else:
            await interaction.response.send_message(
                parts[0], ephemeral=ephemeral, allowed_mentions=NO_PINGS
            )
        for part in parts[1:]:
            await interaction.followup.send(part, ephemeral=ephemeral, allowed_mentions=NO_PINGS)

    @slash_config.autocomplete("plugin")
    async def _complete_plugin(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        ids = _matching([i.id for i in self._declared()], current, str)
        return [app_commands.Choice(name=i, value=i) for i in ids][:25]

    @slash_config.autocomplete("key")
    async def _complete_key(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        info = self._chosen(interaction)
        if info is None or info.plugin is None:
            return []
        choices = []
        for field in _matching(info.plugin.fields, current, lambda f: f.name):
            label = f"{field.name}: {field.description}" if field.description else field.name
            choices.append(app_commands.Choice(name=label[:100], value=field.name))
        return choices[:25]

    @slash_config.autocomplete("value")
    async def _complete_value(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        info = self._chosen(interaction)
        key = getattr(interaction.namespace, "key", None)
        if info is None or info.plugin is None or not key:
            return []
        field = info.plugin.field(str(key).lower())
        if field is None:
            return []
        options = [_text(o) for o in field.options()] + ["reset"]
        return [
            app_commands.Choice(name=o[:100], value=o[:100])
            for o in _matching(options, current, str)
        ][:25]

    def _chosen(self, interaction: discord.Interaction) -> PluginInfo | None:
        name = getattr(interaction.namespace, "plugin", None)
        if not name:
            return None
        try:
            return self._plugin(str(name))
        except Refused:
            return None


def _split_flag(text: str) -> tuple[str, str]:
    """``"VALUE --channel"`` -> ``("VALUE", "channel")``; no flag means this server."""
    words = text.split()
    scope = SERVER
    if words and words[-1].lower() in SCOPE_FLAGS:
        scope = SCOPE_FLAGS[words[-1].lower()]
        text = text.rstrip()[: -len(words[-1])]
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1]
    return text, scope


def _matching(items: list[Any], typed: str, name: Callable[[Any], str]) -> list[Any]:
    """Items whose name contains what was typed, those starting with it first."""
    typed = typed.strip().lower()
    hits = [i for i in items if typed in name(i).lower()]
    return sorted(hits, key=lambda i: not name(i).lower().startswith(typed))


def _text(option: Any) -> str:
    if isinstance(option, bool):
        return "on" if option else "off"
    return str(option)


def _sentence(exc: Exception, key: str) -> str:
    text = str(exc).rstrip(".")
    if not text.startswith("`"):
        text = f"`{key}`: {text}"
    return text + "."
