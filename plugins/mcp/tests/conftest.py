"""Fixtures for the MCP plugin's tests: the test server over stdio and over HTTP,
a toolbox with a stand-in host, fast reconnects."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hark_mcp import MCPConnection, MCPSettings, MCPToolbox, State

SERVER = Path(__file__).with_name("mcp_test_server.py")
TOKEN = "test-bearer-token-5f3a9c"


def stdio_server(**extra: Any) -> dict[str, Any]:
    """A ``[plugin.mcp.servers.NAME]`` table that starts the test server over stdio."""
    table: dict[str, Any] = {"command": sys.executable, "args": [str(SERVER)], "allow": ["*"]}
    table.update(extra)
    return table


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) is not running either.
    with contextlib.suppress(OSError):
        status = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        return status != "Z"
    return True


def pids(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


async def until(check: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    """Poll until ``check()`` is true (the connection's task has no event to await)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.02)


@dataclass
class FakeHost:
    """What the toolbox asks of the bot: the plugin's settings per Discord server."""

    enabled: dict[int | None, list[str]] = field(default_factory=dict)
    prefix: str = "!"

    def settings(self, plugin_id: str, *, guild_id: int | None = None, **_: Any) -> Any:
        values = MCPSettings.model_validate(
            {"enabled": self.enabled.get(guild_id, self.enabled.get(None, ["*"]))}
        )
        return SimpleNamespace(values=values)


@pytest.fixture(autouse=True)
def fast_reconnects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(MCPConnection, "backoff_min", 0.05)
    monkeypatch.setattr(MCPConnection, "backoff_max", 0.2)


@pytest.fixture
def pidfile(tmp_path: Path) -> Path:
    """Where test servers started with ``env=pid_env(pidfile)`` write their pids."""
    return tmp_path / "pids"


def pid_env(path: Path) -> dict[str, str]:
    # A stdio server gets only a minimal environment plus its table's env.
    return {"MCP_TEST_PIDFILE": str(path)}


@pytest.fixture
async def open_toolbox() -> AsyncIterator[Callable[..., Any]]:
    """``await open_toolbox(servers, host=None)``: an open toolbox; closed after the test."""
    opened: list[tuple[MCPToolbox, object]] = []

    async def make(servers: dict[str, Any], host: FakeHost | None = None) -> MCPToolbox:
        box, owner = MCPToolbox(), object()
        await box.open(owner, host or FakeHost(), servers)
        opened.append((box, owner))
        return box

    yield make
    for box, owner in opened:
        await box.close(owner)


async def up(box: MCPToolbox, name: str, timeout: float = 30.0) -> MCPConnection:
    connection = box.connections[name]
    await until(lambda: connection.state is State.UP, timeout, f"{name} up")
    return connection


@dataclass
class HttpServer:
    port: int
    token: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(SERVER), "--http", str(self.port), "--token", self.token],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("the test HTTP server exited")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            time.sleep(0.05)
        raise RuntimeError("the test HTTP server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None


@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    server = HttpServer(free_port(), TOKEN)
    server.start()
    yield server
    server.stop()


def pytest_collection_modifyitems(items: list[Any]) -> None:
    # Every test here runs MCP servers in subprocesses: bound them in time.
    for item in items:
        if "plugins/mcp" in str(item.path) and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(90))
