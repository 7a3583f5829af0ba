"""Declaring a plugin once: its settings model, secrets, providers and Cogs.

    class Settings(hark.Settings):
        voice: str = hark.setting(
            "en-US-AmberNeural", env="AZURE_SPEECH_VOICE", description="the voice to speak with"
        )

    plugin = hark.Plugin(
        description="Azure AI Speech text to speech",
        settings=Settings,
        secrets=[hark.Secret("AZURE_SPEECH_KEY", "a key of your Speech resource")],
        providers=[AzureSynthesizer],
        cogs=[AzureCog],
    )

The entry point (``tts_azure = "hark_tts_azure:plugin"``) points at the object.
The core resolves every setting (see :mod:`hark.settings`), generates
``!config``/``/config`` from the model, and hands each provider call its
server's values. This module is part of the API layer: it imports nothing of
discord.py or the bot.
"""

from __future__ import annotations

import enum
import os
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.fields import FieldInfo

from hark.logs import register_secret

# Where a value may be set with `!config`: by the bot's owner for every server,
# per server, per channel, or by a member for themselves.
GLOBAL, SERVER, CHANNEL, USER = "global", "server", "channel", "user"
SCOPES = (GLOBAL, SERVER, CHANNEL, USER)
DEFAULT_SCOPES = (GLOBAL, SERVER, CHANNEL)

#: The words that return a setting to the value it inherits, everywhere in Hark.
RESET_WORDS = frozenset({"reset", "default", "clear", "unset"})

#: The SQL dialects a plugin's migrations and queries may be written for
#: (``host.database(...).dialect``); PostgreSQL comes with issue 16.
DIALECTS = ("sqlite", "postgresql")

#: One schema step of a plugin: SQL for every dialect, or ``{dialect: SQL}``.
MigrationStep = str | Mapping[str, str]

_META = "hark"  # key of a field's json_schema_extra holding Hark's metadata


class Settings(BaseModel):
    """Base of a plugin's settings model: typed fields, unknown keys rejected, frozen.

    Declare each field with :func:`setting`; every field needs a default.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


def setting(
    default: Any,
    *,
    description: str,
    env: str | None = None,
    scopes: Iterable[str] = DEFAULT_SCOPES,
    choices: Sequence[Any] | None = None,
    **constraints: Any,
) -> Any:
    """A settings field: pydantic's ``Field`` plus where the value may come from.

    ``env`` names an environment variable that overrides ``bot.toml``; ``scopes``
    says where `!config` may set it (``global``, ``server``, ``channel``, ``user``;
    ``()``: nowhere, only ``bot.toml`` and the environment);
    ``choices`` restricts it to a list (offered by autocomplete). Other keywords
    (``ge``, ``le``, ``max_length``, ``pattern``...) are pydantic constraints.
    """
    scopes = tuple(scopes)
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise ValueError(f"unknown scope(s) {unknown}; use {', '.join(SCOPES)}")
    options = list(choices) if choices is not None else None
    meta = {"env": env, "scopes": list(scopes), "choices": options}
    info: FieldInfo = Field(
        default, description=description, json_schema_extra={_META: meta}, **constraints
    )
    if options is not None:

        def one_of(value: Any) -> Any:
            if value is not None and value not in options:
                raise ValueError(f"must be one of {', '.join(f'`{c}`' for c in options)}")
            return value

        info.metadata.append(AfterValidator(one_of))
    return info


@dataclass(frozen=True, slots=True)
class SettingField:
    """One field of a settings model, as the core sees it."""

    name: str
    info: FieldInfo
    description: str
    env: str | None
    scopes: tuple[str, ...]
    choices: tuple[Any, ...] | None

    @property
    def default(self) -> Any:
        return self.info.get_default(call_default_factory=True)

    @property
    def kind(self) -> Any:
        """The field's type without ``None`` and ``Annotated`` (``str | None`` -> ``str``)."""
        return _bare(self.info.annotation)

    @property
    def optional(self) -> bool:
        return _allows_none(self.info.annotation)

    def allows(self, scope: str) -> bool:
        return scope in self.scopes

    def options(self) -> list[Any]:
        """The values it can take when they are few (choices, Literal, enum, bool)."""
        if self.choices is not None:
            return list(self.choices)
        kind = self.kind
        if typing.get_origin(kind) is typing.Literal:
            return list(typing.get_args(kind))
        if isinstance(kind, type) and issubclass(kind, enum.Enum):
            return [member.value for member in kind]
        if kind is bool:
            return [True, False]
        return []

    def allowed(self) -> str:
        """What it accepts, for messages: ``a number between 0.5 and 2.0``."""
        options = self.options()
        if self.kind is bool:
            return "on or off"
        if options:
            return "one of " + ", ".join(f"`{_plain(o)}`" for o in options)
        kind = self.kind
        if typing.get_origin(kind) in (list, tuple, set, frozenset):
            return "a comma-separated list"
        if kind is int:
            return "a whole number" + self._bounds()
        if kind is float:
            return "a number" + self._bounds()
        if kind is str:
            return "text" + self._lengths()
        return f"a {getattr(kind, '__name__', str(kind))}"

    def _constraint(self, kind: type) -> Any:
        for item in self.info.metadata:
            if isinstance(item, kind):
                return item
        return None

    def _bounds(self) -> str:
        low = self._constraint(Ge) or self._constraint(Gt)
        high = self._constraint(Le) or self._constraint(Lt)
        low_v = None if low is None else getattr(low, "ge", getattr(low, "gt", None))
        high_v = None if high is None else getattr(high, "le", getattr(high, "lt", None))
        if isinstance(low, Ge) and isinstance(high, Le):
            return f" between {low_v} and {high_v}"
        parts = []
        if low is not None:
            parts.append(f"{'at least' if isinstance(low, Ge) else 'greater than'} {low_v}")
        if high is not None:
            parts.append(f"{'at most' if isinstance(high, Le) else 'less than'} {high_v}")
        return (" " + " and ".join(parts)) if parts else ""

    def _lengths(self) -> str:
        low, high = self._constraint(MinLen), self._constraint(MaxLen)
        if low is not None and high is not None:
            return f" of {low.min_length} to {_characters(high.max_length)}"
        if high is not None:
            return f" of at most {_characters(high.max_length)}"
        if low is not None:
            return f" of at least {_characters(low.min_length)}"
        return ""


def setting_fields(model: type[Settings]) -> list[SettingField]:
    """The fields of a settings model, in declaration order."""
    out = []
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        meta = extra.get(_META) or {}
        choices = meta.get("choices")
        out.append(
            SettingField(
                name=name,
                info=info,
                description=info.description or "",
                env=meta.get("env"),
                scopes=tuple(DEFAULT_SCOPES if meta.get("scopes") is None else meta["scopes"]),
                choices=None if choices is None else tuple(choices),
            )
        )
    return out


def _bare(annotation: Any) -> Any:
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        if origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(members) == 1:
                annotation = members[0]
                continue
        return annotation


def _allows_none(annotation: Any) -> bool:
    if typing.get_origin(annotation) is typing.Annotated:
        return _allows_none(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return type(None) in typing.get_args(annotation)
    return annotation is type(None)


def _characters(count: int) -> str:
    return f"{count} character" + ("" if count == 1 else "s")


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


@dataclass(frozen=True, slots=True)
class Secret:
    """A secret the plugin needs, by environment variable name (``.env`` counts).

    The value is read from the environment when asked for and registered with the
    log redaction; listings show only whether it is set.
    """

    env: str
    description: str = ""
    required: bool = True

    def value(self, environ: Mapping[str, str] | None = None) -> str:
        """The secret ("" when unset). Never put it in a message or a log line."""
        value = (os.environ if environ is None else environ).get(self.env, "").strip()
        register_secret(value)
        return value

    def is_set(self, environ: Mapping[str, str] | None = None) -> bool:
        return bool((os.environ if environ is None else environ).get(self.env, "").strip())

    def __repr__(self) -> str:  # a declaration, never the value
        return f"Secret({self.env!r})"


def _check_step(number: int, step: Any) -> None:
    if isinstance(step, str):
        return
    if not isinstance(step, Mapping) or not step:
        raise TypeError(f"migration {number} must be SQL text or a {{dialect: SQL}} mapping")
    for dialect, sql in step.items():
        if dialect not in DIALECTS:
            raise TypeError(
                f"migration {number}: unknown dialect {dialect!r}; use {', '.join(DIALECTS)}"
            )
        if not isinstance(sql, str):
            raise TypeError(f"migration {number}: the {dialect} SQL must be text")


@dataclass(kw_only=True, eq=False)
class Plugin:
    """A plugin, declared once. Point the ``hark`` entry point at this object.

    - ``id``: optional; the entry point's name is the plugin id (they must agree).
    - ``settings``: a :class:`Settings` subclass; `!config` and `/config` are
      generated from it, and each provider call gets the server's values
      (``_impl(..., settings=...)``).
    - ``secrets``: :class:`Secret` declarations; a missing required one shows as
      "needs KEY" in `!plugins` and `bot plugins`.
    - ``providers``: provider classes or zero-argument factories, instantiated
      each time a bot loads the plugin (or ready instances).
    - ``cogs``: :class:`hark.PluginCog` subclasses.
    - ``tools``: :class:`hark.Tool` objects (``@hark.tool``) the model may call, or
      :class:`hark.Toolbox` objects whose tools are known only at run time.
    - ``hooks``: an object or module with further ``@hookimpl`` functions.
    - ``prepare``: ``bot prepare``'s step (sync or async, may take ``progress``).
    - ``migrations``: the plugin's own schema, as ordered steps applied once each
      when the bot opens its database (see :meth:`hark.api.Host.database`). A step
      is SQL (one or more statements) or ``{"sqlite": ..., "postgresql": ...}``.
      Append new steps; never edit one that was released.
    """

    description: str
    id: str | None = None
    settings: type[Settings] | None = None
    secrets: Sequence[Secret] = ()
    providers: Sequence[Any] = ()
    cogs: Sequence[type] = ()
    tools: Sequence[Any] = ()
    hooks: Any = None
    default_enabled: bool = True
    prepare: Callable[..., Any] | None = None
    migrations: Sequence[MigrationStep] = ()
    _fields: list[SettingField] = dataclass_field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        self.secrets = tuple(self.secrets)
        self.providers = tuple(self.providers)
        self.cogs = tuple(self.cogs)
        # Checked when the plugin loads (hark.plugins): importing hark.tools here would
        # make a cycle (hark.providers refers to this module).
        self.tools = tuple(self.tools)
        if self.settings is not None:
            if not (isinstance(self.settings, type) and issubclass(self.settings, Settings)):
                raise TypeError("Plugin(settings=...) must be a hark.Settings subclass")
            self._fields = setting_fields(self.settings)
            missing = [f.name for f in self._fields if f.info.is_required()]
            if missing:
                raise TypeError(f"settings {', '.join(missing)} need a default")
        for secret in self.secrets:
            if not isinstance(secret, Secret):
                raise TypeError(f"Plugin(secrets=...) takes hark.Secret, got {secret!r}")
        if isinstance(self.migrations, str | Mapping):
            raise TypeError("Plugin(migrations=...) takes a list of steps, not one step")
        self.migrations = tuple(self.migrations)
        for number, step in enumerate(self.migrations, start=1):
            _check_step(number, step)

    @property
    def fields(self) -> list[SettingField]:
        return list(self._fields)

    def field(self, name: str) -> SettingField | None:
        return next((f for f in self._fields if f.name == name), None)

    def missing_secrets(self, environ: Mapping[str, str] | None = None) -> list[str]:
        """Env names of required secrets that are not set."""
        return [s.env for s in self.secrets if s.required and not s.is_set(environ)]
