"""MCP: the tools of Model Context Protocol servers, offered to the model.

The servers are configured in bot.toml (``[plugin.mcp.servers.NAME]``: a command
to start over stdio, or a streamable HTTP ``url``; each with an ``allow`` list of
tool names). The bot connects when it starts, offers each connected server's
allowed tools in the Discord servers where it is enabled
(``!config mcp enabled``), and reconnects with backoff when a server fails.
``!mcp`` shows the servers, their state and their tools.
"""

from __future__ import annotations

import hark
from hark_mcp.cog import MCPCog
from hark_mcp.config import ServerConfig, ServerEntry, parse_servers
from hark_mcp.connection import MCPConnection, MCPToolError, State, result_text
from hark_mcp.settings import MCPSettings
from hark_mcp.toolbox import TOOLBOX, MCPArguments, MCPToolbox, arguments_model, tool_name

__all__ = [
    "TOOLBOX",
    "MCPArguments",
    "MCPCog",
    "MCPConnection",
    "MCPSettings",
    "MCPToolError",
    "MCPToolbox",
    "ServerConfig",
    "ServerEntry",
    "State",
    "arguments_model",
    "parse_servers",
    "plugin",
    "result_text",
    "tool_name",
]

plugin = hark.Plugin(
    description="Tools from MCP servers (stdio and streamable HTTP) for the model",
    settings=MCPSettings,
    tools=[TOOLBOX],
    cogs=[MCPCog],
)
