"""Finding, loading and listing plugins.

A plugin is whatever an entry point in the ``hark`` group points at (usually a
module) holding ``@hookimpl`` functions. The entry point's name is the plugin id.
Optional module attributes: ``prepare()`` (sync or async; downloads or checks
model files; run by ``bot prepare``), ``DEFAULT_ENABLED`` (bool, default True)
and a docstring (its first line is the description).

A plugin that fails to import, to validate against the hook specs, or to
register is kept in the listing with its error, and the bot runs without it.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from hark import hookspecs
from hark.providers import Capability, Provider

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "hark"
CORE_PLUGIN_ID = "core"

# hook name -> what `register` accepts there
_PROVIDER_HOOKS: dict[str, Capability] = {
    "register_transcribers": Capability.TRANSCRIBE,
    "register_generators": Capability.GENERATE,
    "register_synthesizers": Capability.SYNTHESIZE,
    "register_context_providers": Capability.CONTEXT,
    "register_turn_detectors": Capability.TURN,
}


@dataclass(slots=True)
class PluginInfo:
    id: str
    version: str | None = None
    distribution: str | None = None
    description: str = ""
    module: Any = None
    # "loaded", "error" or "blocked" (not loaded because of the allow/block lists)
    status: str = "loaded"
    error: str | None = None
    # Core plugins cannot be disabled in a server.
    protected: bool = False
    # Shipped inside the core (not subject to the allow-list; still blockable).
    builtin: bool = False
    default_enabled: bool = True
    hooks: list[str] = field(default_factory=list)
    providers: list[Provider] = field(default_factory=list)
    cogs: list[type] = field(default_factory=list)

    @property
    def loaded(self) -> bool:
        return self.status == "loaded"

    @property
    def capabilities(self) -> list[str]:
        caps = sorted({p.capability.value for p in self.providers})
        return [*caps, "commands"] if self.cogs else caps

    @property
    def prepare(self) -> Callable[..., Any] | None:
        fn = getattr(self.module, "prepare", None)
        return fn if callable(fn) else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "version": self.version,
            "distribution": self.distribution,
            "description": self.description,
            "status": self.status,
            "error": self.error,
            "protected": self.protected,
            "builtin": self.builtin,
            "default_enabled": self.default_enabled,
            "hooks": self.hooks,
            "provides": self.capabilities,
            "providers": [{"id": p.id, "capability": p.capability.value} for p in self.providers],
            "cogs": [c.__name__ for c in self.cogs],
            "has_prepare": self.prepare is not None,
        }


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0].strip() if (doc or "").strip() else ""


def _short_error(exc: BaseException) -> str:
    # The last frame says where; the message says what. Enough for a listing.
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


class PluginManager:
    """Wraps a pluggy manager with discovery, allow/block lists and per-plugin records."""

    def __init__(
        self,
        *,
        allow: Iterable[str] | None = None,
        block: Iterable[str] = (),
    ) -> None:
        self.pm = pluggy.PluginManager("hark")
        self.pm.add_hookspecs(hookspecs)
        self.allow = None if allow is None else set(allow)
        self.block = set(block)
        self.plugins: dict[str, PluginInfo] = {}

    # -- discovery -------------------------------------------------------

    def load_entry_points(self, eps: Iterable[EntryPoint] | None = None) -> None:
        """Load every plugin advertised in the ``hark`` entry point group."""
        for ep in sorted(
            eps if eps is not None else entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name
        ):
            if ep.name in self.plugins:
                continue
            dist = getattr(ep, "dist", None)
            info = PluginInfo(
                id=ep.name,
                version=getattr(dist, "version", None),
                distribution=getattr(dist, "name", None),
            )
            if not self._permitted(ep.name):
                info.status = "blocked"
                self.plugins[ep.name] = info
                continue
            try:
                obj = ep.load()
            except (Exception, SystemExit) as exc:  # a broken plugin must not take the bot down
                log.error("plugin %s failed to import: %s", ep.name, _short_error(exc))
                info.status, info.error = "error", f"import failed: {_short_error(exc)}"
                self.plugins[ep.name] = info
                continue
            self.add(obj, ep.name, info=info)

    def _permitted(self, plugin_id: str, *, builtin: bool = False) -> bool:
        if plugin_id == CORE_PLUGIN_ID:
            return True
        if plugin_id in self.block:
            return False
        # Built-in plugins are part of the core: the allow-list is for installed ones.
        return builtin or self.allow is None or plugin_id in self.allow

    def add(
        self,
        obj: Any,
        plugin_id: str,
        *,
        info: PluginInfo | None = None,
        protected: bool = False,
        builtin: bool = False,
        version: str | None = None,
    ) -> PluginInfo:
        """Register ``obj`` (module or object with hook implementations) as ``plugin_id``.

        Used for entry points, for the core's own built-in plugins, and by tests.
        """
        info = info or PluginInfo(id=plugin_id, version=version)
        info.module = obj
        info.protected = protected
        info.builtin = builtin or protected
        info.description = info.description or _first_line(getattr(obj, "__doc__", None))
        info.default_enabled = bool(getattr(obj, "DEFAULT_ENABLED", True))
        self.plugins[plugin_id] = info
        if not self._permitted(plugin_id, builtin=info.builtin):
            info.status = "blocked"
            return info
        try:
            self.pm.register(obj, name=plugin_id)
            # check_pending catches hookimpls whose names match no spec (a typo'd hook).
            self.pm.check_pending()
            info.hooks = sorted(caller.name for caller in self.pm.get_hookcallers(obj) or [])
            self._collect(info)
        except Exception as exc:
            log.error("plugin %s failed to register: %s", plugin_id, _short_error(exc))
            if self.pm.is_registered(obj):
                self.pm.unregister(obj)
            info.status, info.error = "error", f"registration failed: {_short_error(exc)}"
            info.providers.clear()
            info.cogs.clear()
            return info
        info.status, info.error = "loaded", None
        log.info("plugin %s loaded: %s", plugin_id, ", ".join(info.capabilities) or "no providers")
        return info

    def _collect(self, info: PluginInfo) -> None:
        """Call this plugin's register_* hooks with a ``register`` bound to its id."""
        seen: set[tuple[Capability, str]] = set()
        for hook_name, capability in _PROVIDER_HOOKS.items():
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if impl.plugin_name != info.id:
                    continue

                def register(
                    provider: Provider, _cap: Capability = capability, _hook: str = hook_name
                ) -> None:
                    if not isinstance(provider, Provider) or provider.capability != _cap:
                        raise TypeError(
                            f"register() in {_hook} expects a {_cap.value} provider, "
                            f"got {type(provider).__name__}"
                        )
                    provider.plugin_id = info.id
                    # Ids are looked up within one capability, so only clash there.
                    if (_cap, provider.id) in seen:
                        raise ValueError(f"duplicate provider id {provider.id!r}")
                    seen.add((_cap, provider.id))
                    info.providers.append(provider)

                impl.function(register=register)
        for impl in self.pm.hook.register_cogs.get_hookimpls():
            if impl.plugin_name != info.id:
                continue

            def register_cog(cog: type) -> None:
                from discord.ext import commands

                if not (isinstance(cog, type) and issubclass(cog, commands.Cog)):
                    raise TypeError(f"register_cogs expects a Cog class, got {cog!r}")
                info.cogs.append(cog)

            impl.function(register=register_cog)

    # -- queries ---------------------------------------------------------

    def loaded(self) -> list[PluginInfo]:
        return [p for p in self.plugins.values() if p.loaded]

    def get(self, plugin_id: str) -> PluginInfo | None:
        return self.plugins.get(plugin_id)

    def providers(self, capability: Capability) -> list[Provider]:
        return [p for info in self.loaded() for p in info.providers if p.capability == capability]

    def listing(self) -> list[dict[str, Any]]:
        return [info.as_dict() for info in sorted(self.plugins.values(), key=lambda i: i.id)]
