"""Where each plugin setting comes from, decided in one place.

Precedence, lowest first (a layer is skipped when it has no value, or a value
the field does not accept):

    default < bot.toml [plugin.<id>] < the field's environment variable
            < the owner's global value < the server's < the channel's
            < the member's own

Stored layers count only where the field allows that scope (see
:func:`hark.setting`). :func:`resolve` returns the validated values and, for
each field, its :class:`Origin` ("default", "bot.toml", "env AZURE_SPEECH_VOICE",
"bot-wide (owner)", "this server", "this channel", "your own").

Values typed in chat (or found in the environment) are text: :func:`parse_text`
reads them per field type (``on``/``off``, numbers, choices in any case,
comma-separated lists, ``none`` for optional fields) before pydantic validates
them. A refused value becomes a :class:`SettingError` whose message is one line
naming the setting and what it accepts.

This module is part of the API layer; the store (:mod:`hark.store.settings`)
feeds it the stored layers.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

from hark.plugin import CHANNEL, GLOBAL, SERVER, USER, SettingField, Settings, setting_fields

log = logging.getLogger(__name__)

S = TypeVar("S", bound=Settings)

#: The layers, lowest precedence first.
LAYERS = ("default", "bot.toml", "env", GLOBAL, SERVER, CHANNEL, USER)
_LABELS = {
    "default": "default",
    "bot.toml": "bot.toml",
    GLOBAL: "bot-wide (owner)",
    SERVER: "this server",
    CHANNEL: "this channel",
    USER: "your own",
}
# How a stored scope's key reads in the settings table (unchanged since migration 1).
_SCOPE_PREFIX = {SERVER: "guild", CHANNEL: "channel", USER: "user"}


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


#: What a ``stored`` lookup returns for "no value in this scope".
MISSING: Any = _Missing()


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a resolved value came from: a layer of :data:`LAYERS` (and the env name)."""

    layer: str
    env: str | None = None

    @property
    def label(self) -> str:
        return f"env {self.env}" if self.layer == "env" else _LABELS[self.layer]

    @property
    def rank(self) -> int:
        return LAYERS.index(self.layer)

    def __str__(self) -> str:
        return self.label


@dataclass(frozen=True, slots=True)
class Resolved(Generic[S]):
    """A plugin's settings for one server/channel/member, and where each came from."""

    plugin_id: str
    values: S
    origins: Mapping[str, Origin]

    def origin(self, key: str) -> Origin:
        return self.origins[key]


class SettingError(ValueError):
    """A value a setting does not accept. ``str()`` is one line fit to show a user."""


def scope_key(scope: str, target_id: int | None = None) -> str:
    """How a scope is stored: ``global``, ``guild:<id>``, ``channel:<id>``, ``user:<id>``."""
    if scope == GLOBAL:
        return GLOBAL
    if scope not in _SCOPE_PREFIX:
        raise ValueError(f"unknown scope {scope!r}")
    if target_id is None:
        raise ValueError(f"a {scope} scope needs an id")
    return f"{_SCOPE_PREFIX[scope]}:{target_id}"


@functools.cache
def _fields(model: type[Settings]) -> dict[str, SettingField]:
    return {f.name: f for f in setting_fields(model)}


def field_of(model: type[Settings], key: str) -> SettingField:
    """The field ``key`` of ``model``; SettingError (naming the known ones) if none."""
    fields = _fields(model)
    if key not in fields:
        known = ", ".join(f"`{k}`" for k in fields) or "none"
        raise SettingError(f"there is no setting `{key}` (settings: {known})")
    return fields[key]


# -- reading and checking one value -------------------------------------------


def parse_text(field: SettingField, text: str) -> Any:
    """A value typed in chat or found in the environment, read per the field's type."""
    text = text.strip()
    if field.optional and text.lower() == "none":
        return None
    kind = field.kind
    if kind is bool:
        return text.lower()  # pydantic reads on/off, yes/no, true/false, 1/0
    options = field.options()
    if options:
        for option in options:
            if str(option).lower() == text.lower():
                return option
        return text  # refused below, with the list of choices
    origin = typing.get_origin(kind)
    if origin in (list, tuple, set, frozenset):
        return [part.strip() for part in text.split(",") if part.strip()]
    if kind is dict or origin is dict:
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def validate(model: type[Settings], key: str, raw: Any) -> Any:
    """``raw`` as the field ``key`` holds it, or SettingError with one clear line."""
    field = field_of(model, key)
    try:
        return getattr(model.model_validate({key: raw}), key)
    except ValidationError as exc:
        raise SettingError(explain(field, exc)) from None
    except Exception as exc:  # a plugin's validator raised something unexpected
        raise SettingError(f"`{key}` can't take that value ({type(exc).__name__})") from None


def coerce(model: type[Settings], key: str, text: str) -> Any:
    """Text (from chat) read and validated for the field ``key``."""
    return validate(model, key, parse_text(field_of(model, key), text))


def to_json(model: type[Settings], key: str, value: Any) -> Any:
    """A validated value in the JSON form the store keeps (enums as values, etc.)."""
    return model.model_construct(**{key: value}).model_dump(mode="json", include={key})[key]


def explain(field: SettingField, exc: ValidationError) -> str:
    """pydantic's error made readable: "`rate` must be a number between 0.5 and 2.0"."""
    errors = exc.errors(include_url=False)
    error = next((e for e in errors if e["loc"][:1] == (field.name,)), errors[0])
    if error["type"] in ("value_error", "assertion_error"):
        cause = (error.get("ctx") or {}).get("error")
        message = str(cause) if cause is not None else error["msg"]
        separator = " " if message.startswith("must ") else ": "
        return f"`{field.name}`{separator}{message}"
    return f"`{field.name}` must be {field.allowed()}"


# -- resolution ------------------------------------------------------------------


def env_key(model: type[Settings], environ: Mapping[str, str]) -> tuple[str | None, ...]:
    """The environment as far as ``model`` reads it: part of a cache key for
    :func:`resolve`'s result (a change of one of its variables is a new key)."""
    return tuple(environ.get(f.env) for f in _fields(model).values() if f.env)


Report = Callable[[tuple[Any, ...], str], None]


class ReportOnce:
    """Logs each problem once (a broken value is met on every call)."""

    def __init__(self, logger: logging.Logger = log) -> None:
        self.logger = logger
        self.seen: set[tuple[Any, ...]] = set()

    def __call__(self, ident: tuple[Any, ...], line: str) -> None:
        if ident in self.seen:
            return
        if len(self.seen) > 10_000:
            self.seen.clear()
        self.seen.add(ident)
        self.logger.warning("%s", line)


def _shown(raw: Any) -> str:
    text = json.dumps(raw) if not isinstance(raw, str) else repr(raw)
    return text if len(text) <= 80 else text[:79] + "…"


def resolve(
    plugin_id: str,
    model: type[S],
    *,
    toml: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    stored: Callable[[str, str], Any] | None = None,
    guild_id: int | None = None,
    channel_id: int | None = None,
    user_id: int | None = None,
    report: Report | None = None,
) -> Resolved[S]:
    """The plugin's settings here: each field from the highest layer with a valid value.

    ``toml`` is the plugin's ``[plugin.<id>]`` table, ``environ`` the environment
    (default ``os.environ``), ``stored(scope_key, key)`` the store's value or
    :data:`MISSING`. Values that don't validate are skipped and reported (once).
    """
    env = os.environ if environ is None else environ
    toml = toml or {}
    report = report or ReportOnce()
    scopes = [(GLOBAL, None), (SERVER, guild_id), (CHANNEL, channel_id), (USER, user_id)]
    values: dict[str, Any] = {}
    origins: dict[str, Origin] = {}
    for field in _fields(model).values():
        value, origin = field.default, Origin("default")
        candidates: list[tuple[Origin, Any, bool, str]] = []
        if field.name in toml:
            raw = toml[field.name]
            where = f"bot.toml [plugin.{plugin_id}] {field.name} = {_shown(raw)}"
            candidates.append((Origin("bot.toml"), raw, isinstance(raw, str), where))
        if field.env and env.get(field.env, "").strip():
            raw = env[field.env]
            candidates.append((Origin("env", field.env), raw, True, f"{field.env}={_shown(raw)}"))
        if stored is not None:
            for scope, target in scopes:
                if not field.allows(scope) or (scope != GLOBAL and target is None):
                    continue
                key = scope_key(scope, target)
                raw = stored(key, field.name)
                if raw is not MISSING:
                    where = f"the stored {field.name} = {_shown(raw)} ({key})"
                    candidates.append((Origin(scope), raw, False, where))
        for candidate, raw, is_text, where in candidates:
            try:
                value = validate(model, field.name, parse_text(field, raw) if is_text else raw)
            except SettingError as exc:
                report((plugin_id, where), f"{plugin_id}: ignoring {where}: {exc}")
                continue
            origin = candidate
        values[field.name] = value
        origins[field.name] = origin
    return Resolved(plugin_id, model.model_construct(**values), MappingProxyType(origins))


def check(
    plugin_id: str,
    model: type[Settings],
    *,
    toml: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    report: Report | None = None,
) -> list[str]:
    """Start-up check of the bot.toml and environment layers: one line per value
    that is ignored (unknown key, or a value the field refuses). Each is reported."""
    report = report or ReportOnce()
    problems: list[str] = []

    def collect(ident: tuple[Any, ...], line: str) -> None:
        problems.append(line)
        report(ident, line)

    fields = _fields(model)
    for key in toml or {}:
        if key not in fields:
            known = ", ".join(fields) or "none"
            collect(
                (plugin_id, "bot.toml", key),
                f"{plugin_id}: ignoring bot.toml [plugin.{plugin_id}] {key}:"
                f" there is no such setting (settings: {known})",
            )
    resolve(plugin_id, model, toml=toml, environ=environ, report=collect)
    return problems
