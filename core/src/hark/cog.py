"""``PluginCog``: the base class for a plugin's commands and listeners.

The core gates everything a PluginCog offers by the per-server switch: while its
plugin is disabled in a server, its prefix commands act as if they did not exist,
its slash commands are not offered there, and its listeners are not called for
events from that server. Events with no server (DMs, on_ready) always reach it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import discord
from discord.ext import commands

if TYPE_CHECKING:
    from hark.api import Host
    from hark.bot import HarkBot
    from hark.providers import Provider
    from hark.store.settings import PluginSettings

P = TypeVar("P", bound="Provider")


class PluginDisabled(commands.CheckFailure):
    """Raised by the global check for a disabled plugin's command; handled silently."""


def guild_id_of(args: tuple[Any, ...]) -> int | None:
    """The server an event belongs to, from its arguments (None when it has none)."""
    for arg in args:
        if isinstance(arg, discord.Guild):
            return arg.id
        gid = getattr(arg, "guild_id", None)  # Interaction, raw event payloads
        if isinstance(gid, int):
            return gid
        guild = getattr(arg, "guild", None)  # Message, Member, channels, VoiceState owners
        if isinstance(guild, discord.Guild):
            return guild.id
        message = getattr(arg, "message", None)  # Reaction
        guild = getattr(message, "guild", None)
        if isinstance(guild, discord.Guild):
            return guild.id
    return None


def permission_names(member: discord.abc.User, channel: Any) -> frozenset[str]:
    """The Discord permissions (flag names: ``"manage_messages"``...) ``member`` holds in
    ``channel``, for ``ContextRequest.permissions`` (tools that need one check it).
    A DM channel gives Discord's DM permissions; a channel that cannot compute them
    (or an unknown member) gives none."""
    permissions_for = getattr(channel, "permissions_for", None)
    if permissions_for is None:
        return frozenset()
    try:
        permissions = permissions_for(member)
    except (AttributeError, TypeError, discord.ClientException):
        # A user object where a member is needed (left the server meanwhile).
        return frozenset()
    return _names_of_permissions(permissions.value)


@functools.lru_cache(maxsize=256)
def _names_of_permissions(value: int) -> frozenset[str]:
    # Asked for on every turn; a server has a handful of distinct permission sets.
    return frozenset(name for name, held in discord.Permissions(value) if held)


async def can_manage(
    bot: commands.Bot, user: discord.abc.User, guild: discord.Guild | None
) -> bool:
    """Manage Server in ``guild``, or the bot's owner."""
    if await bot.is_owner(user):
        return True
    return (
        isinstance(user, discord.Member)
        and guild is not None
        and user.guild_permissions.manage_guild
    )


async def require_manager(ctx: commands.Context[Any]) -> None:
    """Raise the usual command errors unless the author may manage this server.

    For commands that only need the permission for some arguments (show vs set)."""
    if ctx.guild is None:
        raise commands.NoPrivateMessage()
    if not await can_manage(ctx.bot, ctx.author, ctx.guild):
        raise commands.MissingPermissions(["manage_guild"])


def manage_server() -> Callable[[Any], Any]:
    """Command check: the author has Manage Server here (or owns the bot)."""

    async def predicate(ctx: commands.Context[Any]) -> bool:
        await require_manager(ctx)
        return True

    return commands.check(predicate)


class PluginCog(commands.Cog):
    """Subclass this (instead of ``commands.Cog``) in a plugin; construct with ``(bot)``."""

    # Filled in by the core before ``__init__`` runs (see :meth:`instantiate`).
    plugin_id: str = ""
    # Defaults for this plugin's settings, registered before ``__init__`` runs.
    default_settings: ClassVar[dict[str, Any]] = {}

    def __new__(cls, *args: Any, **kwargs: Any) -> PluginCog:
        self = super().__new__(cls, *args, **kwargs)
        # Cog._inject registers `getattr(self, name)` for each listener, so an
        # instance attribute here is what the bot will call (and later remove).
        for _event, method_name in cls.__cog_listeners__:
            setattr(self, method_name, self._gate(getattr(self, method_name)))
        return self

    def __init__(self, bot: HarkBot) -> None:
        self.bot = bot

    @classmethod
    def instantiate(cls, bot: HarkBot, plugin_id: str) -> PluginCog:
        """Construct as ``cls(bot)`` would, with ``plugin_id`` and settings ready in __init__."""
        self = cls.__new__(cls, bot)
        self.plugin_id = plugin_id
        self.bot = bot
        if cls.default_settings:
            self.settings.register(**cls.default_settings)
        self.__init__(bot)
        return self

    def _gate(
        self, listener: Callable[..., Coroutine[Any, Any, Any]]
    ) -> Callable[..., Coroutine[Any, Any, Any]]:
        @functools.wraps(listener)
        async def gated(*args: Any, **kwargs: Any) -> Any:
            guild_id = guild_id_of(args)
            if guild_id is not None and not self.enabled_in(guild_id):
                return None
            return await listener(*args, **kwargs)

        return gated

    def enabled_in(self, guild_id: int | None) -> bool:
        control = getattr(self.bot, "control", None)
        if control is None or not self.plugin_id:
            return True
        return control.is_enabled(self.plugin_id, guild_id)

    async def on_shutdown(self) -> None:
        """Called once when the bot shuts down, before it disconnects: stop background
        work, leave voice, flush state. (The database is still open.)"""

    @property
    def host(self) -> Host:
        """What the plugin may use of the bot: settings, providers, reply/say/speak,
        events, logging (see :mod:`hark.api`)."""
        return self.bot.host

    @property
    def providers(self) -> list[Provider]:
        """The providers this cog's plugin registered."""
        info = self.bot.runtime.manager.get(self.plugin_id)
        return list(info.providers) if info else []

    def provider(self, kind: type[P]) -> P | None:
        """The first provider this cog's plugin registered that is a ``kind`` (the
        instance the bot uses, with its settings and client), or None."""
        return next((p for p in self.providers if isinstance(p, kind)), None)

    @property
    def settings(self) -> PluginSettings:
        """This plugin's settings namespace (see :mod:`hark.store.settings`)."""
        return self.bot.runtime.settings.for_plugin(self.plugin_id)
