"""A small MCP server for the plugin's tests, written with the official SDK.

    python mcp_test_server.py                  # over stdio
    python mcp_test_server.py --http PORT      # streamable HTTP on 127.0.0.1:PORT/mcp

Its tools: ``add``, ``echo_env`` (a variable of its environment), ``fail``
(an ``isError`` result), ``crash`` (an MCP protocol error), ``hang`` (never
answers), ``exit_now`` (the process dies), ``delete_everything`` (kept off by
allow-lists). With ``--token T`` (HTTP) every request needs ``Authorization:
Bearer T``. When ``MCP_TEST_PIDFILE`` names a file, the process appends its pid
there (so a test can check that no server outlives the bot).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from mcp import MCPError
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("hark-test-server")


@server.tool()
def add(a: int, b: int) -> str:
    """Add two whole numbers."""
    return str(a + b)


@server.tool()
def echo_env(variable: str) -> str:
    """The value of one of this server's environment variables."""
    return os.environ.get(variable, "(unset)")


@server.tool()
def fail(reason: str = "it went wrong") -> str:
    """Always fails, as a tool result marked isError."""
    raise ToolError(f"cannot do that: {reason}")


@server.tool()
def crash() -> str:
    """Fails at the protocol level (a JSON-RPC error, not a result)."""
    raise MCPError(code=-32603, message="internal failure in crash")


@server.tool()
async def hang() -> str:
    """Never answers."""
    await asyncio.sleep(3600)
    return "late"


@server.tool()
def exit_now() -> str:
    """Ends the server's process at once."""
    os._exit(3)


@server.tool()
def delete_everything() -> str:
    """A tool no allow-list should let through."""
    return "deleted"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, default=0, help="serve streamable HTTP on this port")
    parser.add_argument("--token", default="", help="HTTP: the bearer token every request needs")
    parser.add_argument("--fail-start", action="store_true", help="exit before serving")
    args = parser.parse_args()
    pidfile = os.environ.get("MCP_TEST_PIDFILE")
    if pidfile:
        with open(pidfile, "a") as out:
            out.write(f"{os.getpid()}\n")
    if args.fail_start:
        print("test server: refusing to start", file=sys.stderr)
        sys.exit(2)
    if not args.http:
        server.run()
        return
    import uvicorn
    from starlette.responses import PlainTextResponse

    app = server.streamable_http_app(streamable_http_path="/mcp")
    inner = app

    async def guarded(scope, receive, send):
        if scope["type"] == "http" and args.token:
            headers = dict(scope.get("headers") or [])
            if headers.get(b"authorization", b"").decode() != f"Bearer {args.token}":
                await PlainTextResponse("unauthorized", status_code=401)(scope, receive, send)
                return
        await inner(scope, receive, send)

    uvicorn.run(guarded, host="127.0.0.1", port=args.http, log_level="warning", lifespan="on")


if __name__ == "__main__":
    main()
