"""The MCP servers' tools as Hark tools: a :class:`hark.Toolbox`.

A tool ``read_file`` of the server ``files`` is offered as ``files__read_file``
(letters, digits, ``_`` and ``-``; cut to 64 characters with a short hash when
longer). Its arguments are the MCP tool's own JSON schema, passed to the model as
they are; the object the model sends goes to the server unchanged (the server
checks it). Only tools on the server's ``allow`` list are offered, only while it
is connected, and only in Discord servers where it is enabled.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

import hark
from hark_mcp.config import ALL, ServerEntry, parse_servers
from hark_mcp.connection import MCPConnection, State

if TYPE_CHECKING:
    from mcp import types as mcp_types

log = logging.getLogger("hark.plugin.mcp")

_INVALID = re.compile(r"[^a-zA-Z0-9_-]")
_MAX_NAME = 64
_MAX_DESCRIPTION = 1_000


class MCPArguments(BaseModel):
    """Any JSON object, kept as it came; the schema shown is the MCP tool's."""

    model_config = ConfigDict(extra="allow")
    input_schema: ClassVar[dict[str, Any]] = {"type": "object", "properties": {}}

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return copy.deepcopy(cls.input_schema)

    def arguments(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def arguments_model(name: str, schema: Mapping[str, Any] | None) -> type[MCPArguments]:
    """An arguments class whose JSON schema is ``schema`` (an object schema)."""
    shown = dict(copy.deepcopy(schema)) if isinstance(schema, Mapping) else {}
    shown.pop("$schema", None)  # which dialect: nothing the model needs
    if shown.get("type") != "object":
        shown["type"] = "object"
    shown.setdefault("properties", {})
    return type(
        f"{name}_arguments", (MCPArguments,), {"input_schema": shown, "__module__": __name__}
    )


def tool_name(server: str, tool: str, taken: set[str]) -> str:
    """``server__tool``, made valid and unique among ``taken``."""
    name = _INVALID.sub("_", f"{server}__{tool}")
    if len(name) <= _MAX_NAME and name not in taken:
        return name
    digest = hashlib.sha1(f"{server}\0{tool}".encode()).hexdigest()[:8]
    return f"{name[: _MAX_NAME - 9]}_{digest}"


def _description(server: str, tool: mcp_types.Tool) -> str:
    text = " ".join((tool.description or "").split())
    if not text:
        title = tool.title or (tool.annotations.title if tool.annotations else None)
        text = title or f"the {tool.name} tool"
    if len(text) > _MAX_DESCRIPTION:
        text = text[: _MAX_DESCRIPTION - 1] + "…"
    return f"{text} (MCP server {server})"


def _make_tool(connection: MCPConnection, tool: mcp_types.Tool, name: str) -> hark.Tool:
    config = connection.config
    mcp_name = tool.name

    async def call(args: MCPArguments, ctx: hark.ToolContext) -> str:
        return await connection.call(mcp_name, args.arguments(), timeout=config.timeout)

    return hark.Tool(
        name=name,
        description=_description(connection.name, tool),
        args=arguments_model(name, tool.input_schema),
        func=call,
        timeout=config.timeout,
        permission=config.permission,
    )


class MCPToolbox:
    """The tools of the connected MCP servers, per Discord server (``hark.Toolbox``).

    One per process: the bot's Cog opens it when it loads (starting every
    configured server's connection) and closes it when it unloads or the bot
    shuts down. A second bot in the same process shares the first one's
    connections and settings until both have closed it.
    """

    def __init__(self, plugin_id: str = "mcp") -> None:
        self.plugin_id = plugin_id
        self.entries: list[ServerEntry] = []
        self.connections: dict[str, MCPConnection] = {}
        self._host: Any = None
        self._owners: list[object] = []
        self._built: dict[str, tuple[int, list[tuple[str, hark.Tool]]]] = {}

    # -- life ---------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return bool(self._owners)

    async def open(
        self,
        owner: object,
        host: Any,
        servers: Mapping[str, Any] | None,
        *,
        plugin_id: str | None = None,
    ) -> None:
        """Start a connection to each configured server (in the background)."""
        if owner in self._owners:
            return
        self._owners.append(owner)
        if len(self._owners) > 1:
            log.warning("mcp: another bot in this process shares the MCP connections")
            return
        self._host = host
        if plugin_id:
            self.plugin_id = plugin_id
        self.entries = parse_servers(servers)
        self._built.clear()
        for entry in self.entries:
            if entry.config is None:
                log.warning("mcp: server %s is not started: %s", entry.name, entry.problem)
                continue
            connection = MCPConnection(entry.name, entry.config)
            self.connections[entry.name] = connection
            connection.start()
        if self.entries:
            log.info(
                "mcp: %d of %d configured servers starting",
                len(self.connections),
                len(self.entries),
            )

    async def close(self, owner: object) -> None:
        """Stop every connection once the last owner has closed (idempotent)."""
        if owner not in self._owners:
            return
        self._owners.remove(owner)
        if self._owners:
            return
        connections, self.connections = list(self.connections.values()), {}
        for connection in connections:
            try:
                await connection.stop()
            except Exception:
                log.exception("mcp: %s failed to stop", connection.name)
        self._built.clear()
        self._host = None

    # -- what a Discord server gets -------------------------------------------------

    def enabled_names(self, guild_id: int | None) -> list[str]:
        """The ``enabled`` setting here (``*`` or names); [] when it can't be read."""
        if self._host is None:
            return []
        try:
            return list(self._host.settings(self.plugin_id, guild_id=guild_id).values.enabled)
        except Exception:
            log.warning("mcp: the enabled setting could not be read", exc_info=True)
            return []

    def usable(self, name: str, guild_id: int | None, enabled: Sequence[str] | None = None) -> bool:
        """Whether the server ``name`` may be used in this Discord server (or in DMs)."""
        connection = self.connections.get(name)
        if connection is None:
            return False
        config = connection.config
        if guild_id is None:
            if not config.dms:
                return False
        elif config.guilds is not None and guild_id not in config.guilds:
            return False
        names = self.enabled_names(guild_id) if enabled is None else enabled
        return ALL in names or name in names

    def tools_for(self, guild_id: int | None) -> list[hark.Tool]:
        """The allowed tools of the servers connected now and enabled here. Quick:
        no I/O (tools are rebuilt only when a server's list or state changed)."""
        if not self.connections:
            return []
        enabled = self.enabled_names(guild_id)
        tools: list[hark.Tool] = []
        for name, connection in self.connections.items():
            if connection.state is State.UP and self.usable(name, guild_id, enabled):
                tools.extend(self._tools(connection))
        return tools

    def _tools(self, connection: MCPConnection) -> list[hark.Tool]:
        return [made for _, made in self._pairs(connection)]

    def _pairs(self, connection: MCPConnection) -> list[tuple[str, hark.Tool]]:
        """(MCP tool name, Hark tool) for each allowed tool, rebuilt when it changed."""
        built = self._built.get(connection.name)
        if built is not None and built[0] == connection.generation:
            return built[1]
        taken = {
            made.name
            for other, (_, pairs) in self._built.items()
            if other != connection.name
            for _, made in pairs
        }
        pairs = []
        for tool in connection.allowed_tools:
            name = tool_name(connection.name, tool.name, taken)
            try:
                pairs.append((tool.name, _make_tool(connection, tool, name)))
            except (ValueError, TypeError) as exc:
                log.warning("mcp: %s: tool %r is not offered: %s", connection.name, tool.name, exc)
                continue
            taken.add(name)
        self._built[connection.name] = (connection.generation, pairs)
        return pairs

    def exposed_names(self, name: str) -> dict[str, str]:
        """The MCP tool name -> the name the model sees, for a configured server."""
        connection = self.connections.get(name)
        if connection is None:
            return {}
        return {original: made.name for original, made in self._pairs(connection)}

    # -- status ---------------------------------------------------------------------

    def problems(self) -> list[str]:
        """One line per configured server that is not up (for `!plugins`-style listings)."""
        lines = []
        for entry in self.entries:
            connection = self.connections.get(entry.name)
            if connection is None:
                lines.append(f"{entry.name}: not started ({entry.problem})")
            elif connection.state is not State.UP:
                lines.append(f"{entry.name}: {connection.describe()}")
        return lines

    def status(self) -> str | None:
        """A one-line summary when something is wrong, else None."""
        problems = self.problems()
        if not problems:
            return None
        up = sum(1 for c in self.connections.values() if c.state is State.UP)
        return f"{up} of {len(self.entries)} MCP servers up — " + "; ".join(problems)


#: The plugin's toolbox (see :class:`MCPToolbox`).
TOOLBOX = MCPToolbox()
