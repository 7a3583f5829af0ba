"""What `!config mcp` shows and changes."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

import hark
from hark_mcp.config import ALL, register_secrets, summary

_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,32}$")
_NONE_WORDS = frozenset({"none", "off", "-"})


class ServerTable(BaseModel):
    """One server's bot.toml table, as written. Checked when the bot starts
    (:func:`hark_mcp.config.parse_servers`), one server at a time, so one mistake
    costs only that server. Shown in `!config` as a short summary."""

    model_config = ConfigDict(extra="allow", frozen=True)

    def table(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def __repr__(self) -> str:
        return summary(self.table())

    __str__ = __repr__


class MCPSettings(hark.Settings):
    """The servers come from bot.toml; which of them a Discord server uses is its choice."""

    servers: dict[str, ServerTable] = hark.setting(
        {},
        scopes=(),
        description="the MCP servers to connect to: [plugin.mcp.servers.NAME] tables in bot.toml",
    )
    enabled: list[str] = hark.setting(
        [ALL],
        scopes=("global", "server"),
        description="the MCP servers whose tools the model may use here (names, * for all,"
        " none for no server)",
    )

    @field_validator("servers", mode="before")
    @classmethod
    def _secrets_first(cls, value: Any) -> Any:
        # Before anything could log or show the table (a start-up warning quotes it).
        register_secrets(value)
        return value

    def server_tables(self) -> dict[str, dict[str, Any]]:
        return {name: table.table() for name, table in self.servers.items()}

    @field_validator("enabled")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        names = [v.strip() for v in value if v.strip()]
        if [n.lower() for n in names] in ([w] for w in _NONE_WORDS):
            return []
        for name in names:
            if name != ALL and not _NAME.match(name):
                raise ValueError(f"must be MCP server names (or *), and `{name}` is not one")
        return list(dict.fromkeys(names))
