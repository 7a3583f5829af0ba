"""Per-server plugin control: which plugins are on, and which provider serves each capability.

Independent of Discord so it can be tested (and used by ``bot console``) alone.
Resolution order for "is plugin P on in server G":
the server's switch, else the owner's global default, else the plugin's own default.
For "which provider does capability C use in server G": the server's choice, else
the owner's global choice, else ``[providers]`` in bot.toml, else the best available
enabled provider (ranked by ``Provider.default_priority``, then id), as long as
the chosen one is installed and enabled in G.
"""

from __future__ import annotations

import logging

from hark.config import Config
from hark.plugins import PluginInfo, PluginManager
from hark.providers import Capability, ContextProvider, Provider
from hark.store import GLOBAL, PluginState
from hark.tools import Tool, Toolbox

log = logging.getLogger(__name__)


class ControlError(Exception):
    """A request that cannot be done (unknown id, protected plugin); message is user-facing."""


class PluginControl:
    def __init__(
        self, manager: PluginManager, state: PluginState, config: Config | None = None
    ) -> None:
        self.manager = manager
        self.state = state
        self.config = config or Config()
        # (plugin, tool name) clashes already logged, so a turn does not log each time.
        self._clashes_logged: set[tuple[str, str]] = set()

    # -- plugins ---------------------------------------------------------

    def plugin(self, plugin_id: str) -> PluginInfo:
        info = self.manager.get(plugin_id)
        if info is None:
            known = ", ".join(sorted(self.manager.plugins)) or "none"
            raise ControlError(f"No plugin called `{plugin_id}`. Installed: {known}.")
        return info

    def is_enabled(self, plugin_id: str, guild_id: int | None) -> bool:
        info = self.manager.get(plugin_id)
        if info is None or not info.loaded:
            return False
        if info.protected:
            return True
        if guild_id is not None:
            local = self.state.enabled(guild_id, plugin_id)
            if local is not None:
                return local
        default = self.state.enabled(GLOBAL, plugin_id)
        return info.default_enabled if default is None else default

    async def set_enabled(self, plugin_id: str, guild_id: int, enabled: bool) -> PluginInfo:
        """Switch a plugin in one guild (``GLOBAL`` for the owner's default)."""
        info = self.plugin(plugin_id)
        if info.protected and not enabled:
            raise ControlError(f"`{plugin_id}` is part of the core and can't be disabled.")
        if not info.loaded:
            raise ControlError(f"`{plugin_id}` is not loaded ({info.error or info.status}).")
        await self.state.set_enabled(guild_id, plugin_id, enabled)
        return info

    # -- providers -------------------------------------------------------

    def candidates(self, capability: Capability, guild_id: int | None) -> list[Provider]:
        return [
            p for p in self.manager.providers(capability) if self.is_enabled(p.plugin_id, guild_id)
        ]

    def find(
        self, capability: Capability, name: str, pool: list[Provider] | None = None
    ) -> Provider | None:
        """Match a provider by its id (``plugin`` / ``plugin:name``), its plugin id, or
        the plugin id without its kind prefix (``openrouter`` for ``llm_openrouter``)."""
        pool = self.manager.providers(capability) if pool is None else pool
        exact = [p for p in pool if p.id == name]
        if exact:
            return exact[0]
        by_plugin = [p for p in pool if p.plugin_id == name]
        if not by_plugin:
            short = [p for p in pool if p.plugin_id.partition("_")[2] == name]
            if len({p.plugin_id for p in short}) == 1:
                by_plugin = short
        # A plugin with several providers of one kind: its best usable one.
        return min(by_plugin, key=_rank) if by_plugin else None

    def chosen(self, capability: Capability, guild_id: int | None) -> tuple[str | None, str]:
        """The explicit choice in force and where it comes from ("server", "global", "config")."""
        if guild_id is not None:
            local = self.state.choice(guild_id, capability.value)
            if local:
                return local, "server"
        default = self.state.choice(GLOBAL, capability.value)
        if default:
            return default, "global"
        configured = self.config.default_providers.get(capability.value)
        if configured:
            return configured, "config"
        return None, "auto"

    def provider_for(self, capability: Capability, guild_id: int | None) -> Provider | None:
        if capability == Capability.CONTEXT:
            raise ValueError("every enabled context provider runs; use context_providers()")
        pool = self.candidates(capability, guild_id)
        name, _ = self.chosen(capability, guild_id)
        if name:
            picked = self.find(capability, name, pool)
            if picked is not None:
                return picked
        if len(pool) == 1:  # the usual case: no need to ask it whether it is usable
            return pool[0]
        return min(pool, key=_rank) if pool else None

    async def choose(self, capability: Capability, provider_name: str, guild_id: int) -> Provider:
        if capability not in Capability.selectable():
            choices = ", ".join(c.value for c in Capability.selectable())
            raise ControlError(f"`{capability.value}` is not a choice; use one of: {choices}.")
        provider = self.find(capability, provider_name)
        if provider is None:
            available = (
                ", ".join(p.id for p in self.manager.providers(capability)) or "none installed"
            )
            raise ControlError(
                f"No {capability.value} provider called `{provider_name}`. Available: {available}."
            )
        if guild_id != GLOBAL and not self.is_enabled(provider.plugin_id, guild_id):
            raise ControlError(
                f"`{provider.plugin_id}` is disabled here; enable it first with "
                f"`{self.config.prefix}plugins enable {provider.plugin_id}`."
            )
        await self.state.set_choice(guild_id, capability.value, provider.id)
        return provider

    def context_providers(self, guild_id: int | None) -> list[ContextProvider]:
        return [
            p
            for p in self.candidates(Capability.CONTEXT, guild_id)
            if isinstance(p, ContextProvider)
        ]

    # -- tools -----------------------------------------------------------

    def tools_for(self, guild_id: int | None) -> list[Tool]:
        """The tools the model may call in this server: those of plugins enabled here,
        with each toolbox's current tools. A name seen twice keeps its first holder
        (fixed tools clash at load time; a toolbox's may change at run time)."""
        tools: list[Tool] = []
        seen: dict[str, str] = {}
        for info in self.manager.loaded():
            if not info.tools or not self.is_enabled(info.id, guild_id):
                continue
            for item in info.tools:
                for tool in self._expand(item, info.id, guild_id):
                    owner = seen.get(tool.name)
                    if owner is not None:
                        if (info.id, tool.name) not in self._clashes_logged:
                            self._clashes_logged.add((info.id, tool.name))
                            log.warning(
                                "tool %s of plugin %s skipped: plugin %s has one of that name",
                                tool.name,
                                info.id,
                                owner,
                            )
                        continue
                    seen[tool.name] = info.id
                    tools.append(tool)
        return tools

    def _expand(self, item: Tool | Toolbox, plugin_id: str, guild_id: int | None) -> list[Tool]:
        if isinstance(item, Tool):
            return [item]
        try:
            found = list(item.tools_for(guild_id))
        except Exception:
            # A toolbox's trouble (a dead MCP server) costs its tools, not the turn.
            log.exception("toolbox of plugin %s failed to list its tools", plugin_id)
            return []
        tools = []
        for tool in found:
            if not isinstance(tool, Tool):
                log.warning("toolbox of plugin %s gave %r, not a hark.Tool", plugin_id, tool)
                continue
            tool.plugin_id = tool.plugin_id or plugin_id
            tools.append(tool)
        return tools


def _rank(provider: Provider) -> tuple[bool, int, str]:
    """Default order: usable before unusable, then higher priority, then id."""
    return provider.unavailable_reason() is not None, -provider.default_priority, provider.id


def parse_capability(text: str) -> Capability:
    aliases = {
        "stt": "transcribe",
        "llm": "generate",
        "tts": "synthesize",
        "transcription": "transcribe",
        "generation": "generate",
        "synthesis": "synthesize",
        "speech": "synthesize",
    }
    value = aliases.get(text.lower(), text.lower())
    try:
        capability = Capability(value)
    except ValueError:
        choices = ", ".join(c.value for c in Capability.selectable())
        raise ControlError(f"`{text}` is not a capability; use one of: {choices}.") from None
    if capability not in Capability.selectable():
        raise ControlError("Every enabled context provider runs; there is nothing to choose.")
    return capability
