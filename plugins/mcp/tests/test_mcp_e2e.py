"""The mcp plugin in a running bot: real HarkBot and discord.py against the loopback
Discord, a scripted model that calls an MCP tool of a real MCP server (started over
stdio by the bot), `!mcp`, `!mcp reconnect`, per-server enabling, shutdown."""

from __future__ import annotations

from typing import Any

import hark_mcp
from conftest import pid_env, pids, running, stdio_server, until
from hark_mcp import State

from hark.testing.fakes import FakeGenerator, fake_plugin, tool_call, tool_results
from hark.testing.harness import BotHarness

CHAT = {"trigger_names": ["robot"], "edit_interval": 0.05, "rate_limit": "0"}


def adds(messages: list[Any]) -> Any:
    """A model that asks the MCP server to add, then says what came back."""
    results = tool_results(messages)
    if results:
        return f"Result: {' | '.join(results)}"
    return ["Adding. ", tool_call("files__add", a=2, b=40)]


async def start(tmp_path, generator, servers: dict[str, Any]) -> BotHarness:
    h = BotHarness(
        tmp_path,
        plugins={"fake_llm": fake_plugin(generator), "mcp": hark_mcp.plugin},
        config={**CHAT, "plugin_settings": {"mcp": {"servers": servers}}},
    )
    await h.start()
    return h


async def connected(name: str = "files") -> None:
    await until(
        lambda: (
            name in hark_mcp.TOOLBOX.connections
            and hark_mcp.TOOLBOX.connections[name].state is State.UP
        ),
        what=f"{name} up",
    )


async def test_the_model_calls_a_tool_of_an_mcp_server_over_stdio(tmp_path, pidfile):
    gen = FakeGenerator(adds, supports_tools=True)
    h = await start(tmp_path, gen, {"files": stdio_server(allow=["add"], env=pid_env(pidfile))})
    try:
        await connected()
        reply = await h.ask("robot, what is 2 + 40?", timeout=20)
        assert await h.final(reply, timeout=15) == "Adding. \n\nResult: 42"
        assert gen.offered_tools[0] == ["files__add"]
        spec = gen.requests[0].tools[0]
        assert spec.parameters["required"] == ["a", "b"]
        assert "MCP server files" in spec.description
        second = gen.requests[1].messages
        assert (second[-1].role, second[-1].content) == ("tool", "42")
        (pid,) = pids(pidfile)
        assert running(pid)
    finally:
        await h.close()
    # The bot's shutdown ended the server's process.
    assert not running(pid)
    assert hark_mcp.TOOLBOX.connections == {}


async def test_mcp_lists_the_servers_and_reconnect_needs_manage_server(tmp_path):
    gen = FakeGenerator("ok", supports_tools=True)
    servers = {
        "files": stdio_server(allow=["add", "fail"]),
        "broken": {"command": "/nonexistent/mcp-server", "allow": ["*"]},
        "nolist": stdio_server(allow=[]),
    }
    h = await start(tmp_path, gen, servers)
    try:
        await connected()
        listing = (await h.ask("!mcp")).content
        assert "`files` (stdio: python" in listing
        assert "**up**, 2 of 7 tools allowed — on here" in listing
        assert "tools: `files__add`, `files__fail`" in listing
        assert "`broken` (stdio: mcp-server) — **down**: the command was not found" in listing
        assert "`nolist` — **not started**: allow: list the tools the model may use" in listing
        # `!plugins` says so too, next to the plugin.
        plugins = (await h.ask("!plugins")).content
        line = next(x for x in plugins.splitlines() if x.startswith("`mcp`"))
        assert "⚠ 1 of 3 MCP servers up" in line and "broken: " in line, line

        refused = await h.ask("!mcp reconnect files")
        assert "Manage Server" in refused.content or "permission" in refused.content.lower()
        assert hark_mcp.TOOLBOX.connections["files"].connects == 1

        assert (await h.ask("!mcp reconnect files", author=h.admin)).content == (
            "Reconnecting `files`…"
        )
        done = await h.next_reply(timeout=20)
        assert done.content == "`files`: up, 2 of 7 tools allowed."
        assert hark_mcp.TOOLBOX.connections["files"].connects == 2

        unknown = await h.ask("!mcp reconnect nope", author=h.admin)
        assert unknown.content.startswith("No MCP server `nope` is running")
    finally:
        await h.close()


async def test_a_discord_server_chooses_its_mcp_servers(tmp_path):
    gen = FakeGenerator(adds, supports_tools=True)
    h = await start(tmp_path, gen, {"files": stdio_server(allow=["add"])})
    try:
        await connected()
        other = h.server.create_guild("Other")
        lobby = h.server.create_text_channel(other, "lobby")
        carol = h.server.create_member(other, "carol")

        answer = await h.ask("!config mcp enabled none", author=h.admin)
        assert "enabled" in answer.content
        listing = (await h.ask("!mcp")).content
        assert "— off here" in listing

        text = await h.final(await h.ask("robot, what is 2 + 40?", timeout=20), timeout=15)
        assert gen.offered_tools[-1] == []
        assert "42" not in text
        # The other server keeps the default (every configured server).
        await h.final(
            await h.ask("robot, what is 2 + 40?", channel=lobby, author=carol), timeout=15
        )
        assert gen.offered_tools[-2] == ["files__add"]

        await h.ask("!config mcp enabled files", author=h.admin)
        await h.final(await h.ask("robot, what is 2 + 40?", timeout=20), timeout=15)
        assert gen.offered_tools[-2] == ["files__add"]

        # Switching the plugin off in a server takes its tools away there too.
        await h.ask("!plugins disable mcp", author=h.admin)
        await h.final(await h.ask("robot, what is 2 + 40?", timeout=20), timeout=15)
        assert gen.offered_tools[-1] == []
    finally:
        await h.close()


async def test_secrets_are_never_shown_in_discord(tmp_path, monkeypatch):
    secret = "s3cret-token-for-discord-test-19ab"
    monkeypatch.setenv("MCP_E2E_TOKEN", secret)

    def leaks(messages):
        results = tool_results(messages)
        if results:
            return f"The key is {results[0]}"
        return [tool_call("files__echo_env", variable="KEY")]

    gen = FakeGenerator(leaks, supports_tools=True)
    servers = {
        "files": stdio_server(
            allow=["echo_env"], env={"KEY": "${MCP_E2E_TOKEN}", "OTHER": "literal-secret-xyz"}
        )
    }
    h = await start(tmp_path, gen, servers)
    try:
        await connected()
        answer = await h.final(await h.ask("robot, what is the key?", timeout=20), timeout=15)
        assert answer == "The key is ***"
        shown = [
            (await h.ask("!mcp")).content,
            (await h.ask("!config mcp")).content,
            (await h.ask("!config mcp servers")).content,
        ]
        for text in shown:
            assert secret not in text
            assert "literal-secret-xyz" not in text
    finally:
        await h.close()
