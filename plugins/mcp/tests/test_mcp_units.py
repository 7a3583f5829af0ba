"""The plugin's pieces without a server: bot.toml tables, the enabled setting, tool
names, argument models and how results read."""

from __future__ import annotations

import pytest
from hark_mcp import (
    MCPSettings,
    MCPToolError,
    arguments_model,
    parse_servers,
    result_text,
    tool_name,
)
from hark_mcp.config import summary
from mcp import types as mcp_types
from pydantic import ValidationError

from hark.api import redact


def problems(table, environ=None):
    return {e.name: e.problem for e in parse_servers(table, environ or {})}


def test_a_stdio_and_an_http_server():
    entries = parse_servers(
        {
            "files": {"command": "npx", "args": ["-y", "server-fs", "/srv"], "allow": ["read"]},
            "search": {"url": "https://search.example/mcp", "allow": ["*"], "timeout": 5},
        },
        {},
    )
    files, search = sorted(entries, key=lambda e: e.name)
    assert files.config.transport == "stdio" and files.config.args == ["-y", "server-fs", "/srv"]
    assert files.config.allows("read") and not files.config.allows("write")
    assert search.config.transport == "http" and search.config.allows("anything")
    assert search.config.timeout == 5 and search.config.permission is None
    # Defaults: 30 s per call, not in DMs, every Discord server, checked every minute.
    assert (files.config.timeout, files.config.dms, files.config.guilds) == (30.0, False, None)
    assert files.config.check_interval == 60.0


def test_literal_and_nested_header_values_become_secrets_before_validation():
    (entry,) = parse_servers(
        {
            "s": {
                "url": "https://search.example/mcp",
                "headers": {"Authorization": "Bearer literal-token-55", "X": {"k": "nested-77x"}},
                "allow": ["*"],
            }
        },
        {},
    )
    assert entry.config is None and entry.problem  # a nested table is not a header
    assert "nested-77x" not in entry.problem
    assert redact("literal-token-55 nested-77x") == "*** ***"


def test_variables_come_from_the_environment_and_become_secrets():
    environ = {"SEARCH_TOKEN": "tok-1234567890", "ROOT": "/srv/shared"}
    (entry,) = parse_servers(
        {
            "s": {
                "url": "https://search.example/mcp",
                "headers": {"Authorization": "Bearer ${SEARCH_TOKEN}", "X-Literal": "lit-98765"},
                "allow": ["*"],
            }
        },
        environ,
    )
    assert entry.config.headers["Authorization"] == "Bearer tok-1234567890"
    assert redact("tok-1234567890 lit-98765") == "*** ***"
    (fs,) = parse_servers({"fs": {"command": "x", "args": ["${ROOT}"], "allow": ["*"]}}, environ)
    assert fs.config.args == ["/srv/shared"]
    assert repr(entry.config) == "ServerConfig(http https://search.example)"


def test_a_missing_variable_names_it():
    assert problems({"s": {"command": "x", "env": {"K": "${NOT_SET}"}, "allow": ["*"]}}) == {
        "s": "needs `NOT_SET` (not set in the environment)"
    }


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ({"command": "x"}, "allow: required"),
        ({"command": "x", "allow": []}, 'allow: list the tools the model may use, or ["*"]'),
        ({"allow": ["*"]}, "give either command (stdio) or url (streamable HTTP)"),
        ({"command": "x", "allow": ["*"], "colour": "red"}, "colour: unknown key"),
        ({"url": "ftp://host/mcp", "allow": ["*"]}, "url: must be an http:// or https:// URL"),
        ({"command": "x", "allow": ["*"], "headers": {"A": "b"}}, "headers are for a url"),
        ({"url": "http://h/mcp", "allow": ["*"], "args": ["a"]}, "args, env and cwd are for"),
        ({"command": "x", "allow": ["*"], "permission": "fly"}, "permission: 'fly' is not a"),
        ({"command": "x", "allow": ["*"], "timeout": 0}, "timeout: Input should be greater"),
    ],
)
def test_each_mistake_is_explained(table, problem):
    assert problems({"s": table})["s"].startswith(problem)


def test_bad_names_and_shapes_cost_only_their_server():
    found = problems(
        {
            "has space": {"command": "x", "allow": ["*"]},
            "flat": "npx server",
            "good": {"command": "x", "allow": ["*"]},
        }
    )
    assert found == {
        "has space": "the name may have letters, digits, _ and - (≤32)",
        "flat": "must be a table ([plugin.mcp.servers.NAME])",
        "good": None,
    }


def test_a_permission_is_a_discord_flag():
    (entry,) = parse_servers({"s": {"command": "x", "allow": ["*"], "permission": "Manage Guild"}})
    assert entry.config.permission == "manage_guild"


def test_the_enabled_setting():
    assert MCPSettings().enabled == ["*"]
    assert MCPSettings(enabled=["files", "search", "files"]).enabled == ["files", "search"]
    assert MCPSettings(enabled=["none"]).enabled == []
    assert MCPSettings(enabled=[]).enabled == []
    with pytest.raises(ValidationError, match="`no such` is not one"):
        MCPSettings(enabled=["no such"])


def test_the_servers_setting_is_shown_without_its_values():
    settings = MCPSettings(
        servers={
            "fs": {"command": "/usr/bin/npx", "env": {"KEY": "secret-value-1"}, "allow": ["*"]},
            "web": {"url": "https://h.example/mcp?key=abc", "allow": ["*"]},
        }
    )
    assert str(settings.servers) == "{'fs': stdio npx, 'web': http https://h.example}"
    assert settings.server_tables()["fs"]["env"] == {"KEY": "secret-value-1"}
    assert summary({}) == "(neither command nor url)"


def test_tool_names_are_valid_and_unique():
    assert tool_name("files", "read_file", set()) == "files__read_file"
    assert tool_name("files", "read.file v2", set()) == "files__read_file_v2"
    long = tool_name("search", "x" * 80, set())
    assert len(long) == 64 and long.startswith("search__xxx")
    taken = {"files__a_b"}
    other = tool_name("files", "a.b", taken)
    assert other != "files__a_b" and len(other) <= 64


def test_the_arguments_model_shows_the_tool_schema_and_passes_the_object_through():
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"path": {"type": "string", "description": "where"}},
        "required": ["path"],
        "title": "readArguments",
    }
    model = arguments_model("files__read", schema)
    shown = model.model_json_schema()
    assert "$schema" not in shown and shown["required"] == ["path"]
    shown["properties"]["path"]["type"] = "changed"
    assert model.model_json_schema()["properties"]["path"]["type"] == "string"  # a copy
    args = model.model_validate({"path": "/srv/a.txt", "extra": {"deep": [1, 2]}})
    assert args.arguments() == {"path": "/srv/a.txt", "extra": {"deep": [1, 2]}}
    with pytest.raises(ValidationError):
        model.model_validate(["not", "an", "object"])
    # A schema that is no object schema still gives one (what the APIs accept).
    assert arguments_model("t", None).model_json_schema() == {"type": "object", "properties": {}}


def test_results_read_as_text():
    result = mcp_types.CallToolResult(
        content=[
            mcp_types.TextContent(type="text", text="first"),
            mcp_types.ImageContent(type="image", data="AAAA", mime_type="image/png"),
            mcp_types.ResourceLink(type="resource_link", name="notes", uri="file:///notes.md"),
            mcp_types.EmbeddedResource(
                type="resource",
                resource=mcp_types.TextResourceContents(uri="file:///a", text="embedded"),
            ),
        ]
    )
    assert result_text(result) == (
        "first\n[image (image/png) not shown]\n[resource notes: file:///notes.md]\nembedded"
    )
    structured = mcp_types.CallToolResult(content=[], structured_content={"n": 1})
    assert result_text(structured) == '{"n": 1}'
    assert result_text(mcp_types.CallToolResult(content=[])) == "(no output)"


def test_an_error_result_raises_with_the_servers_text():
    failed = mcp_types.CallToolResult(
        content=[mcp_types.TextContent(type="text", text="no such file")], is_error=True
    )
    with pytest.raises(MCPToolError) as caught:
        result_text(failed)
    assert caught.value.user_message == "no such file"
