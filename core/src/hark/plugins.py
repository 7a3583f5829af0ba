"""Finding, loading and listing plugins.

A plugin is whatever an entry point in the ``hark`` group points at. The entry
point's name is the plugin id. Either

- a declared plugin, a :class:`hark.Plugin` object (or a module whose ``plugin``
  attribute is one): its providers and Cogs are registered through the same
  hooks, and its settings model and secrets are kept on :class:`PluginInfo`; or
- (v1) a module or object holding ``@hookimpl`` functions. Optional attributes:
  ``prepare()`` (sync or async; downloads or checks model files; run by
  ``bot prepare``), ``DEFAULT_ENABLED`` (bool, default True) and a docstring
  (its first line is the description).

A plugin that fails to import, to validate against the hook specs, or to
register is kept in the listing with its error, and the bot runs without it.

The built-in plugins (core, chat, persona, history, voice, speech) are entry
points of the ``hark`` distribution itself, loaded by :meth:`PluginManager.load_builtins`
ahead of every other plugin.
"""

from __future__ import annotations

import logging
import traceback
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, PackageNotFoundError, distribution, entry_points
from typing import Any

import pluggy

from hark import hookspecs
from hark.hookspecs import hookimpl
from hark.plugin import Plugin
from hark.providers import Capability, Provider
from hark.tools import Tool, Toolbox

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "hark"
CORE_PLUGIN_ID = "core"
# The distribution whose own entry points are the built-in plugins.
BUILTIN_DISTRIBUTION = "hark"

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
    # Tools the model may call, and toolboxes (tools known at run time), in order.
    tools: list[Tool | Toolbox] = field(default_factory=list)
    # The declaration of a declared (v2) plugin: settings model, secrets...
    plugin: Plugin | None = None

    @property
    def loaded(self) -> bool:
        return self.status == "loaded"

    @property
    def missing_secrets(self) -> list[str]:
        """Env names of the required secrets that are not set ("needs a key")."""
        return self.plugin.missing_secrets() if self.plugin is not None else []

    @property
    def capabilities(self) -> list[str]:
        caps = sorted({p.capability.value for p in self.providers})
        if self.cogs:
            caps.append("commands")
        if self.tools:
            caps.append("tools")
        return caps

    @property
    def prepare(self) -> Callable[..., Any] | None:
        if self.plugin is not None:
            return self.plugin.prepare
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
            # Fixed tools by name; a toolbox's tools change at run time.
            "tools": [t.name for t in self.tools if isinstance(t, Tool)],
            "toolboxes": sum(1 for t in self.tools if not isinstance(t, Tool)),
            "has_prepare": self.prepare is not None,
            # Declared plugins: setting names, and secrets as set / not set (never values).
            "settings": [f.name for f in self.plugin.fields] if self.plugin else [],
            "secrets": [
                {"env": s.env, "required": s.required, "set": s.is_set()}
                for s in (self.plugin.secrets if self.plugin else ())
            ],
            "needs": self.missing_secrets,
        }


def declaration_of(obj: Any) -> Plugin | None:
    """The :class:`hark.Plugin` an entry point's object stands for, if it is declared."""
    if isinstance(obj, Plugin):
        return obj
    candidate = getattr(obj, "plugin", None) if isinstance(obj, types.ModuleType) else None
    return candidate if isinstance(candidate, Plugin) else None


def _hooks_name(plugin_id: str) -> str:
    """The pluggy name of a declared plugin's extra ``hooks`` object."""
    return f"{plugin_id}#hooks"


class _DeclaredHooks:
    """Hook implementations that register a :class:`hark.Plugin`'s providers and Cogs."""

    def __init__(self, plugin: Plugin) -> None:
        self.plugin = plugin
        self._made: list[Provider] | None = None

    def _providers(self, capability: Capability) -> list[Provider]:
        if self._made is None:
            made = []
            for item in self.plugin.providers:
                provider = item if isinstance(item, Provider) else item()
                if not isinstance(provider, Provider) or provider.capability not in set(
                    _PROVIDER_HOOKS.values()
                ):
                    raise TypeError(f"Plugin(providers=...) got {provider!r}, not a provider")
                made.append(provider)
            self._made = made
        return [p for p in self._made if p.capability == capability]

    def _register(self, capability: Capability, register: Callable[[Any], None]) -> None:
        for provider in self._providers(capability):
            register(provider)

    @hookimpl
    def register_transcribers(self, register):
        self._register(Capability.TRANSCRIBE, register)

    @hookimpl
    def register_generators(self, register):
        self._register(Capability.GENERATE, register)

    @hookimpl
    def register_synthesizers(self, register):
        self._register(Capability.SYNTHESIZE, register)

    @hookimpl
    def register_context_providers(self, register):
        self._register(Capability.CONTEXT, register)

    @hookimpl
    def register_turn_detectors(self, register):
        self._register(Capability.TURN, register)

    @hookimpl
    def register_cogs(self, register):
        for cog in self.plugin.cogs:
            register(cog)

    @hookimpl
    def register_tools(self, register):
        for item in self.plugin.tools:
            register(item)


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0].strip() if (doc or "").strip() else ""


def builtin_entry_points() -> list[EntryPoint]:
    """The built-in plugins: the ``hark`` group's entry points of the ``hark``
    distribution, ``core`` first, then by id."""
    try:
        eps = distribution(BUILTIN_DISTRIBUTION).entry_points.select(group=ENTRY_POINT_GROUP)
    except PackageNotFoundError:  # a source checkout that was never pip-installed
        log.error("the hark distribution is not installed: no built-in plugins")
        return []
    return sorted(eps, key=lambda ep: (ep.name != CORE_PLUGIN_ID, ep.name))


def _is_builtin(ep: EntryPoint) -> bool:
    return getattr(getattr(ep, "dist", None), "name", None) == BUILTIN_DISTRIBUTION


def _short_error(exc: BaseException) -> str:
    # The last frame says where; the message says what. Enough for a listing.
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


class ToolClash(ValueError):
    """A plugin's tool name is already another plugin's (the plugin is not loaded)."""


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
        """Load every plugin advertised in the ``hark`` entry point group, except the
        built-ins (see :meth:`load_builtins`)."""
        builtin_ids = {ep.name for ep in builtin_entry_points()}
        for ep in sorted(
            eps if eps is not None else entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name
        ):
            if _is_builtin(ep) or ep.name in self.plugins:
                continue
            if ep.name in builtin_ids:
                log.error("plugin %s (%s) not loaded: a built-in plugin has that id", ep.name, ep)
                continue
            self._load(ep)

    def load_builtins(self, host: Any) -> None:
        """Load the built-in plugins, and put them ahead of every other plugin.

        They are the ``hark`` distribution's own entry points. One that names a class
        (persona, history) is constructed with ``host``, the :class:`~hark.runtime.Runtime`.
        The allow-list does not apply to them; the block list does, except to ``core``.
        An id already taken by a plugin added by hand (a test's stand-in) keeps it.
        """
        for ep in builtin_entry_points():
            if ep.name not in self.plugins:
                self._load(ep, builtin=True, host=host)
        self.plugins = dict(sorted(self.plugins.items(), key=lambda item: not item[1].builtin))

    def _load(self, ep: EntryPoint, *, builtin: bool = False, host: Any = None) -> None:
        dist = getattr(ep, "dist", None)
        info = PluginInfo(
            id=ep.name,
            version=getattr(dist, "version", None),
            distribution=getattr(dist, "name", None),
            builtin=builtin,
            protected=builtin and ep.name == CORE_PLUGIN_ID,
        )
        if not self._permitted(ep.name, builtin=builtin):
            info.status = "blocked"
            self.plugins[ep.name] = info
            return
        try:
            obj = ep.load()
            if builtin and isinstance(obj, type):
                obj = obj(host)
        except (Exception, SystemExit) as exc:  # a broken plugin must not take the bot down
            log.error("plugin %s failed to import: %s", ep.name, _short_error(exc))
            info.status, info.error = "error", f"import failed: {_short_error(exc)}"
            self.plugins[ep.name] = info
            return
        self.add(obj, ep.name, info=info, protected=info.protected, builtin=builtin)

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

        Used for entry points and by tests.
        """
        info = info or PluginInfo(id=plugin_id, version=version)
        info.module = obj
        info.protected = protected
        info.builtin = builtin or protected
        declared = info.plugin = declaration_of(obj)
        if declared is not None:
            info.description = info.description or declared.description
            info.default_enabled = declared.default_enabled
        else:
            info.description = info.description or _first_line(getattr(obj, "__doc__", None))
            info.default_enabled = bool(getattr(obj, "DEFAULT_ENABLED", True))
        self.plugins[plugin_id] = info
        if not self._permitted(plugin_id, builtin=info.builtin):
            info.status = "blocked"
            return info
        # What pluggy registers: the object itself, or for a declared plugin an
        # adapter for its providers and Cogs plus its own extra hooks.
        registered: list[tuple[Any, str]] = [(obj, plugin_id)]
        if declared is not None:
            registered = [(_DeclaredHooks(declared), plugin_id)]
            if declared.hooks is not None:
                registered.append((declared.hooks, _hooks_name(plugin_id)))
        try:
            if declared is not None and declared.id not in (None, plugin_id):
                raise ValueError(
                    f"the plugin declares id {declared.id!r} but is installed as {plugin_id!r}"
                )
            for item, name in registered:
                self.pm.register(item, name=name)
            # check_pending catches hookimpls whose names match no spec (a typo'd hook).
            self.pm.check_pending()
            info.hooks = sorted(
                {c.name for item, _ in registered for c in self.pm.get_hookcallers(item) or []}
            )
            self._collect(info)
            if declared is not None:
                # The adapter implements every hook: list only those that register something.
                used = {h for h, c in _PROVIDER_HOOKS.items() if c.value in info.capabilities}
                used |= {"register_cogs"} if info.cogs else set()
                used |= {"register_tools"} if info.tools else set()
                extra = self.pm.get_hookcallers(declared.hooks) if declared.hooks else None
                info.hooks = sorted(used | {c.name for c in extra or []})
            for provider in info.providers:
                provider.declaration = declared
        except Exception as exc:
            # A clash names both plugins already; where in plugins.py it was found is noise.
            why = str(exc) if isinstance(exc, ToolClash) else _short_error(exc)
            log.error("plugin %s failed to register: %s", plugin_id, why)
            for item, _ in registered:
                if self.pm.is_registered(item):
                    self.pm.unregister(item)
            info.status, info.error = "error", f"registration failed: {why}"
            info.providers.clear()
            info.cogs.clear()
            info.tools.clear()
            return info
        info.status, info.error = "loaded", None
        log.info("plugin %s loaded: %s", plugin_id, ", ".join(info.capabilities) or "no providers")
        return info

    def _collect(self, info: PluginInfo) -> None:
        """Call this plugin's register_* hooks with a ``register`` bound to its id."""
        seen: set[tuple[Capability, str]] = set()
        owners = {info.id, _hooks_name(info.id)}
        for hook_name, capability in _PROVIDER_HOOKS.items():
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if impl.plugin_name not in owners:
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
            if impl.plugin_name not in owners:
                continue

            def register_cog(cog: type) -> None:
                from discord.ext import commands

                if not (isinstance(cog, type) and issubclass(cog, commands.Cog)):
                    raise TypeError(f"register_cogs expects a Cog class, got {cog!r}")
                info.cogs.append(cog)

            impl.function(register=register_cog)
        self._collect_tools(info, owners)

    def _collect_tools(self, info: PluginInfo, owners: set[str]) -> None:
        """Call this plugin's register_tools hooks. A name another loaded plugin holds
        (or one this plugin registers twice) fails the plugin's registration."""
        taken = self.tool_owners()
        names: set[str] = set()
        for impl in self.pm.hook.register_tools.get_hookimpls():
            if impl.plugin_name not in owners:
                continue

            def register(item: Tool | Toolbox) -> None:
                if isinstance(item, Tool):
                    if item.name in names:
                        raise ToolClash(f"tool {item.name} is registered twice by plugin {info.id}")
                    owner = taken.get(item.name)
                    if owner is not None and owner != info.id:
                        raise ToolClash(
                            f"tool {item.name} of plugin {info.id} is already registered "
                            f"by plugin {owner}"
                        )
                    names.add(item.name)
                    item.plugin_id = info.id
                elif not isinstance(item, Toolbox):
                    raise TypeError(
                        f"register_tools expects a hark.Tool or hark.Toolbox, got {item!r}"
                    )
                info.tools.append(item)

            impl.function(register=register)

    # -- queries ---------------------------------------------------------

    def loaded(self) -> list[PluginInfo]:
        return [p for p in self.plugins.values() if p.loaded]

    def get(self, plugin_id: str) -> PluginInfo | None:
        return self.plugins.get(plugin_id)

    def providers(self, capability: Capability) -> list[Provider]:
        return [p for info in self.loaded() for p in info.providers if p.capability == capability]

    def tool_owners(self) -> dict[str, str]:
        """Fixed tool name -> the id of the loaded plugin that registered it."""
        return {
            item.name: info.id
            for info in self.loaded()
            for item in info.tools
            if isinstance(item, Tool)
        }

    def listing(self) -> list[dict[str, Any]]:
        return [info.as_dict() for info in sorted(self.plugins.values(), key=lambda i: i.id)]
