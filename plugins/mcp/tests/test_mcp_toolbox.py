"""The toolbox against real MCP servers (tests/mcp_test_server.py, written with the
official SDK) over stdio and streamable HTTP: listing, calling, errors, timeouts,
servers that die or never start, per-Discord-server enabling, secrets."""

from __future__ import annotations

import asyncio
import json
import logging
import sys

import pytest
from conftest import (
    SERVER,
    FakeHost,
    HttpServer,
    pid_env,
    pids,
    running,
    stdio_server,
    until,
    up,
)
from hark_mcp import MCPConnection, State

from hark import ContextRequest, ToolCall, ToolContext
from hark.api import redact
from hark.tools import run_tool

GUILD = 111


def context(guild_id: int | None = GUILD, permissions: frozenset[str] | None = None) -> ToolContext:
    request = ContextRequest(
        "hi", guild_id=guild_id, channel_id=5, user_id=7, permissions=permissions
    )
    return ToolContext(request=request)


async def call(box, tool: str, /, **arguments):
    """Run the tool ``tool`` offered in GUILD with these arguments, as the chat would."""
    tools = {t.name: t for t in box.tools_for(GUILD)}
    return await run_tool(tools[tool], ToolCall("call_1", tool, json.dumps(arguments)), context())


async def test_a_tool_over_stdio_is_listed_with_its_schema_and_called(open_toolbox):
    box = await open_toolbox({"files": stdio_server(allow=["add", "echo_env"])})
    await up(box, "files")

    tools = {t.name: t for t in box.tools_for(GUILD)}
    assert set(tools) == {"files__add", "files__echo_env"}
    spec = tools["files__add"].spec()
    # The model sees the MCP tool's own JSON schema.
    assert spec.parameters["properties"]["a"]["type"] == "integer"
    assert spec.parameters["required"] == ["a", "b"]
    assert spec.description.startswith("Add two whole numbers.")

    result = await call(box, "files__add", a=2, b=40)
    assert (result.content, result.error) == ("42", False)


async def test_the_allow_list_hides_every_other_tool(open_toolbox):
    box = await open_toolbox({"files": stdio_server(allow=["add"])})
    connection = await up(box, "files")

    assert [t.name for t in box.tools_for(GUILD)] == ["files__add"]
    # The server lists them all; only the allowed one is offered.
    assert "delete_everything" in {t.name for t in connection.tools}
    assert connection.describe() == "up, 1 of 7 tools allowed"


async def test_an_error_result_and_a_protocol_error_reach_the_model(open_toolbox):
    box = await open_toolbox({"t": stdio_server()})
    await up(box, "t")

    failed = await call(box, "t__fail", reason="no disk")
    assert failed.error
    assert "cannot do that: no disk" in failed.content

    crashed = await call(box, "t__crash")
    assert crashed.error
    assert "internal failure in crash" in crashed.content

    invalid = await call(box, "t__add", a="many", b=1)
    assert invalid.error  # the server's argument check, as an isError result
    # The session survives all three.
    assert (await call(box, "t__add", a=1, b=1)).content == "2"


async def test_a_hanging_tool_times_out_and_the_server_stays_usable(open_toolbox):
    box = await open_toolbox({"t": stdio_server(timeout=0.5)})
    await up(box, "t")

    result = await call(box, "t__hang")
    assert result.error
    assert "did not finish within 0.5s" in result.content
    assert result.seconds < 5
    assert (await call(box, "t__add", a=3, b=4)).content == "7"


async def test_a_server_that_dies_is_shown_down_then_reconnects(open_toolbox, pidfile, monkeypatch):
    # Slow enough to see it down, fast enough for a test.
    monkeypatch.setattr(MCPConnection, "backoff_min", 1.0)
    monkeypatch.setattr(MCPConnection, "backoff_max", 1.0)
    box = await open_toolbox({"t": stdio_server(env=pid_env(pidfile))})
    connection = await up(box, "t")
    first = pids(pidfile)

    result = await call(box, "t__exit_now")
    assert result.error
    assert "disconnected" in result.content

    await until(lambda: connection.state is State.DOWN, what="down")
    assert box.tools_for(GUILD) == []
    assert "t: down: " in (box.status() or "")
    assert "next try in" in connection.describe()

    await up(box, "t")
    assert connection.connects == 2
    assert (await call(box, "t__add", a=1, b=2)).content == "3"
    assert len(pids(pidfile)) == 2 and pids(pidfile)[0] == first[0]
    assert box.status() is None


async def test_a_server_that_will_not_start_says_why_and_keeps_trying(open_toolbox):
    box = await open_toolbox(
        {
            "broken": stdio_server(args=[str(SERVER), "--fail-start"]),
            "missing": {"command": "/nonexistent/mcp-server", "allow": ["*"]},
            "ok": stdio_server(),
        }
    )
    broken, missing = box.connections["broken"], box.connections["missing"]
    await until(lambda: broken.attempts >= 3 and missing.attempts >= 3, what="retries")
    await up(box, "ok")

    assert broken.state is not State.UP
    assert broken.error == (
        "the server closed the connection (it said: test server: refusing to start)"
    )
    assert missing.error == "the command was not found"
    assert [t.name.split("__")[0] for t in box.tools_for(GUILD)] == ["ok"] * 7
    status = box.status() or ""
    assert status.startswith("1 of 3 MCP servers up")
    assert "broken:" in status and "missing:" in status


async def test_a_wrong_table_is_not_started_and_the_others_are(open_toolbox):
    box = await open_toolbox(
        {
            "nolist": {"command": sys.executable, "args": [str(SERVER)]},
            "both": {"command": "x", "url": "http://127.0.0.1:1/mcp", "allow": ["*"]},
            "ok": stdio_server(),
        }
    )
    await up(box, "ok")
    problems = {e.name: e.problem for e in box.entries}
    assert problems["nolist"] == "allow: required"
    assert "either command (stdio) or url" in (problems["both"] or "")
    assert set(box.connections) == {"ok"}
    assert "nolist: not started (allow: required)" in (box.status() or "")


async def test_each_discord_server_uses_the_mcp_servers_it_enabled(open_toolbox):
    host = FakeHost(enabled={None: ["*"], 1: ["a"], 2: [], 3: ["a", "b"]})
    box = await open_toolbox(
        {
            "a": stdio_server(allow=["add"]),
            "b": stdio_server(allow=["add"], guilds=[3, 4]),
            "c": stdio_server(allow=["add"], dms=True),
        },
        host,
    )
    for name in "abc":
        await up(box, name)

    def offered(guild_id: int | None) -> list[str]:
        return sorted(t.name for t in box.tools_for(guild_id))

    assert offered(1) == ["a__add"]
    assert offered(2) == []
    assert offered(3) == ["a__add", "b__add"]
    # Enabled everywhere by default, but b is only for the Discord servers it lists.
    assert offered(4) == ["a__add", "b__add", "c__add"]
    assert offered(5) == ["a__add", "c__add"]
    # Direct messages: only a server marked dms = true.
    assert offered(None) == ["c__add"]


async def test_a_server_needing_a_permission_refuses_members_without_it(open_toolbox):
    box = await open_toolbox({"t": stdio_server(allow=["add"], permission="manage_messages")})
    await up(box, "t")
    (tool,) = box.tools_for(GUILD)
    call_ = ToolCall("c", tool.name, '{"a": 1, "b": 1}')

    refused = await run_tool(tool, call_, context(permissions=frozenset({"send_messages"})))
    assert refused.error and "manage messages" in refused.content
    allowed = await run_tool(tool, call_, context(permissions=frozenset({"manage_messages"})))
    assert allowed.content == "2"


async def test_secrets_reach_the_server_but_not_the_logs_or_the_model(
    open_toolbox, monkeypatch, caplog
):
    secret = "s3cret-for-the-mcp-server-81c2"
    monkeypatch.setenv("MCP_TEST_SECRET", secret)
    caplog.set_level(logging.DEBUG)
    box = await open_toolbox(
        {"t": stdio_server(env={"SERVER_KEY": "${MCP_TEST_SECRET}", "PLAIN": "literal-key-77"})}
    )
    await up(box, "t")

    # The server got it (its tool reads its environment) ...
    result = await call(box, "t__echo_env", variable="SERVER_KEY")
    assert not result.error
    # ... but what the model reads is redacted, like a bot.toml literal.
    assert result.content == "***"
    assert (await call(box, "t__echo_env", variable="PLAIN")).content == "***"
    # The bot's own environment is not passed on.
    assert (await call(box, "t__echo_env", variable="MCP_TEST_SECRET")).content == "(unset)"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "up (hark-test-server" in logged
    assert secret not in logged
    assert secret not in redact(caplog.text)


async def test_closing_the_toolbox_ends_every_server_process(open_toolbox, pidfile):
    env = pid_env(pidfile)
    box = await open_toolbox({"a": stdio_server(env=env), "b": stdio_server(env=env)})
    await up(box, "a")
    await up(box, "b")
    started = pids(pidfile)
    assert len(started) == 2 and all(running(pid) for pid in started)

    owner = box._owners[0]
    await box.close(owner)
    assert not any(running(pid) for pid in started)
    assert box.tools_for(GUILD) == []
    assert all(c.state is State.STOPPED for c in box.connections.values())


# -- streamable HTTP --------------------------------------------------------------------


def http_table(server: HttpServer, **extra):
    table = {
        "url": server.url,
        "headers": {"Authorization": "Bearer ${MCP_TEST_TOKEN}"},
        "allow": ["add", "fail"],
    }
    table.update(extra)
    return table


async def test_a_tool_over_streamable_http_with_headers(open_toolbox, http_server, monkeypatch):
    monkeypatch.setenv("MCP_TEST_TOKEN", http_server.token)
    box = await open_toolbox({"web": http_table(http_server)})
    await up(box, "web")

    assert sorted(t.name for t in box.tools_for(GUILD)) == ["web__add", "web__fail"]
    assert (await call(box, "web__add", a=20, b=22)).content == "42"
    failed = await call(box, "web__fail", reason="offline")
    assert failed.error and "cannot do that: offline" in failed.content


async def test_a_wrong_token_is_shown_as_the_reason(open_toolbox, http_server, monkeypatch):
    monkeypatch.setenv("MCP_TEST_TOKEN", "not-the-right-token")
    box = await open_toolbox({"web": http_table(http_server)})
    connection = box.connections["web"]
    await until(lambda: connection.state is State.DOWN, what="down")
    assert connection.error == (
        "the server refused the connection (HTTP 401): check its headers (a token?)"
    )
    assert "not-the-right-token" not in connection.describe()


async def test_an_http_server_that_goes_away_is_down_until_it_is_back(
    open_toolbox, http_server, monkeypatch
):
    monkeypatch.setenv("MCP_TEST_TOKEN", http_server.token)
    box = await open_toolbox({"web": http_table(http_server, check_interval=0.3)})
    connection = await up(box, "web")

    http_server.stop()
    await until(lambda: connection.state is not State.UP, what="noticed")
    failed = await call(box, "web__add", a=1, b=1) if box.tools_for(GUILD) else None
    assert failed is None or failed.error
    await until(lambda: connection.state is State.DOWN and connection.failures >= 2, what="down")

    http_server.start()
    await up(box, "web")
    assert (await call(box, "web__add", a=2, b=2)).content == "4"


@pytest.mark.parametrize("protocol", ["auto", "legacy"])
async def test_both_protocol_modes_connect(open_toolbox, protocol):
    box = await open_toolbox({"t": stdio_server(protocol=protocol, allow=["add"])})
    await up(box, "t")
    assert (await call(box, "t__add", a=5, b=5)).content == "10"


async def test_reconnect_on_request_skips_the_wait(open_toolbox, pidfile):
    box = await open_toolbox({"t": stdio_server(env=pid_env(pidfile))})
    connection = await up(box, "t")
    before = connection.attempts
    connection.reconnect()
    assert await connection.wait_settled(20, after=before) is State.UP
    assert connection.connects == 2
    await asyncio.sleep(0)
    assert len(pids(pidfile)) == 2
