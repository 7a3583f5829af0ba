"""The MCP servers of bot.toml, read and checked one by one.

    [plugin.mcp.servers.files]
    command = "npx"
    args = ["-y", "@modelcontextprotocol/server-filesystem", "/srv/shared"]
    allow = ["read_text_file", "list_directory"]

    [plugin.mcp.servers.search]
    url = "http://127.0.0.1:8931/mcp"
    headers = { Authorization = "Bearer ${SEARCH_TOKEN}" }
    allow = ["*"]

A server has either ``command`` (stdio: the bot starts it) or ``url`` (streamable
HTTP), and an ``allow`` list (required). ``${NAME}`` anywhere in ``command``,
``args``, ``env``, ``cwd``, ``url`` or ``headers`` is replaced by the environment
variable NAME, so tokens stay in ``.env``; every ``env`` and ``headers`` value
and every substituted variable is registered as a secret (redacted from logs,
listings and tool results). A server whose table is wrong is not started and
shows the problem in ``!mcp``; the others are unaffected.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import discord
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

import hark
from hark.api import redact

# A server's name prefixes its tools' names, which must stay [a-zA-Z0-9_-]{1,64}.
SERVER_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,32}$")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
ALL = "*"


class ServerConfig(BaseModel):
    """One ``[plugin.mcp.servers.NAME]`` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: str | None = Field(None, min_length=1)
    args: list[str] = Field(default_factory=list)
    # Added to a minimal environment (HOME, PATH, USER...): the bot's own variables,
    # DISCORD_TOKEN included, are not passed on.
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    # Tool names the model may call ("*": all of them, including ones added later).
    allow: list[str]
    # Discord servers (ids) where it may be used; none: every server.
    guilds: list[int] | None = None
    # Offered in direct messages too (off: only in servers).
    dms: bool = False
    # The Discord permission the member whose message started the turn must hold.
    permission: str | None = None
    # Seconds per tool call; the chat's tool time budget may shorten it.
    timeout: float = Field(30.0, gt=0, le=600)
    connect_timeout: float = Field(30.0, gt=0, le=600)
    # Seconds between checks that the server still answers (and its tools are the
    # same); 0: never (a stdio server that exits is noticed at once anyway).
    check_interval: float = Field(60.0, ge=0, le=86_400)
    # "auto" asks for the newest protocol and falls back to the initialize handshake;
    # "legacy" goes straight to the handshake (older servers).
    protocol: Literal["auto", "legacy"] = "auto"

    @field_validator("allow")
    @classmethod
    def _allow(cls, value: list[str]) -> list[str]:
        names = [v.strip() for v in value if v.strip()]
        if not names:
            raise ValueError('list the tools the model may use, or ["*"] for all')
        return names

    @field_validator("permission")
    @classmethod
    def _permission(cls, value: str | None) -> str | None:
        if value is None:
            return None
        flag = value.strip().lower().replace(" ", "_")
        if flag not in discord.Permissions.VALID_FLAGS:
            raise ValueError(f"{value!r} is not a Discord permission (e.g. manage_messages)")
        return flag

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _one_transport(self) -> ServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("give either command (stdio) or url (streamable HTTP)")
        if self.url is not None and (self.args or self.env or self.cwd):
            raise ValueError("args, env and cwd are for a command, not a url")
        if self.command is not None and self.headers:
            raise ValueError("headers are for a url, not a command")
        return self

    @property
    def transport(self) -> str:
        return "stdio" if self.command is not None else "http"

    def allows(self, tool_name: str) -> bool:
        return ALL in self.allow or tool_name in self.allow

    def where(self) -> str:
        """What it connects to, fit to show: the program, or the URL's host (a path
        or query may carry a token)."""
        if self.command is not None:
            return os.path.basename(self.command)
        parts = urlsplit(self.url or "")
        return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"

    def __repr__(self) -> str:  # never the env, headers or arguments
        return f"ServerConfig({self.transport} {self.where()})"

    __str__ = __repr__


def summary(table: Mapping[str, Any]) -> str:
    """A server's table in a few words, without its env, headers or arguments."""
    command, url = table.get("command"), table.get("url")
    if isinstance(command, str):
        return f"stdio {os.path.basename(command)}"
    if isinstance(url, str):
        parts = urlsplit(url)
        return f"http {parts.scheme}://{parts.hostname or ''}"
    return "(neither command nor url)"


@dataclass(frozen=True, slots=True)
class ServerEntry:
    """A configured server: its settings, or why it can't be used."""

    name: str
    config: ServerConfig | None
    problem: str | None = None


def register_secrets(table: Any, environ: Mapping[str, str] | None = None) -> None:
    """Every value that may be a secret (env, headers, substituted variables), given
    to the log redaction before anything could print it."""
    if not isinstance(table, Mapping):
        return
    env = os.environ if environ is None else environ
    for server in table.values():
        if not isinstance(server, Mapping):
            continue
        for key in ("env", "headers"):
            # Every string under them, even in a malformed nested table: a validation
            # error may quote it.
            for value in _strings(server.get(key)):
                for secret in (value, _expand(value, env)[0]):
                    hark.register_secret(secret)
                    # "Bearer abc": the credential alone may be echoed too.
                    scheme, _, credential = secret.partition(" ")
                    if credential and scheme.isalpha():
                        hark.register_secret(credential.strip())
        url = server.get("url")
        if isinstance(url, str):
            hark.register_secret(urlsplit(_expand(url, env)[0]).password)
        for text in _strings(server):
            for name in _VARIABLE.findall(text):
                hark.register_secret(env.get(name))


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


def _expand(text: str, environ: Mapping[str, str]) -> tuple[str, list[str]]:
    missing: list[str] = []

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            missing.append(name)
            return ""
        return environ[name]

    return _VARIABLE.sub(value, text), missing


def _expand_all(value: Any, environ: Mapping[str, str], missing: list[str]) -> Any:
    if isinstance(value, str):
        text, absent = _expand(value, environ)
        missing.extend(absent)
        return text
    if isinstance(value, Mapping):
        return {k: _expand_all(v, environ, missing) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_expand_all(v, environ, missing) for v in value]
    return value


def _explain(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False)[:3]:
        where = ".".join(str(p) for p in error.get("loc", ()))
        message = error.get("msg", "invalid")
        if error.get("type") == "extra_forbidden":
            message = "unknown key"
        elif error.get("type") == "missing":
            message = "required"
        message = message.removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)


def parse_servers(
    table: Mapping[str, Any] | None, environ: Mapping[str, str] | None = None
) -> list[ServerEntry]:
    """The ``[plugin.mcp.servers]`` tables, by name; each one checked on its own."""
    env = os.environ if environ is None else environ
    register_secrets(table, env)
    entries: list[ServerEntry] = []
    for name, raw in sorted((table or {}).items()):
        name = str(name)
        if not SERVER_NAME.match(name):
            entries.append(
                ServerEntry(name[:40], None, "the name may have letters, digits, _ and - (≤32)")
            )
            continue
        if not isinstance(raw, Mapping):
            entries.append(ServerEntry(name, None, "must be a table ([plugin.mcp.servers.NAME])"))
            continue
        missing: list[str] = []
        expanded = _expand_all(dict(raw), env, missing)
        if missing:
            needs = ", ".join(f"`{m}`" for m in dict.fromkeys(missing))
            entries.append(ServerEntry(name, None, f"needs {needs} (not set in the environment)"))
            continue
        try:
            entries.append(ServerEntry(name, ServerConfig.model_validate(expanded)))
        except ValidationError as exc:
            entries.append(ServerEntry(name, None, redact(_explain(exc))))
    return entries
