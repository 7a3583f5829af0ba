"""Tools: typed async functions a plugin offers the model.

    class Roll(BaseModel):
        sides: int = Field(6, ge=2, le=1000, description="faces of the die")

    @hark.tool(timeout=2)
    async def roll_die(args: Roll, ctx: hark.ToolContext) -> str:
        "Roll one die and say what came up."
        return str(random.randint(1, args.sides))

    plugin = hark.Plugin(description="Dice", tools=[roll_die])

The arguments model becomes the tool's JSON schema; the docstring (or
``description=``) tells the model what it is for. ``permission`` names the
Discord permission the member whose message started the turn must hold
(``"manage_messages"``...): a tool that posts or changes server state needs one.
A tool is offered only where its plugin is enabled.

Tools whose list changes at run time (an MCP server's) come from a
:class:`Toolbox` instead: ``tools_for(guild_id)`` is asked on every turn.

Whatever goes wrong in a tool (bad JSON, invalid arguments, a missing permission,
an exception, a timeout) becomes a result the model reads, never an error of the
turn. This module is part of the API layer: it imports nothing of discord.py.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import re
import typing
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ValidationError

from hark.providers.types import ContextRequest, ToolCall, ToolSpec

log = logging.getLogger(__name__)

# What the model may call a tool (OpenAI's and Ollama's rule).
NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
DEFAULT_TIMEOUT = 10.0
# A result longer than this is cut: it goes back into the prompt.
MAX_RESULT_CHARS = 4_000


@dataclass(slots=True)
class ToolContext:
    """What a tool knows about the turn that called it."""

    request: ContextRequest
    # The host interface (hark.api.Host): reply, speak, settings, providers. None in
    # places without a bot (a bare unit test).
    host: Any = None
    # The plugin's resolved settings for this server and channel (its model), if declared.
    settings: Any = None

    @property
    def guild_id(self) -> int | None:
        return self.request.guild_id

    @property
    def channel_id(self) -> int | None:
        return self.request.channel_id

    @property
    def user_id(self) -> int | None:
        return self.request.user_id


ToolFunc = Callable[[Any, ToolContext], Awaitable[Any]]


@dataclass(slots=True)
class Tool:
    """One tool. Build it with :func:`tool`, or directly."""

    name: str
    description: str
    args: type[BaseModel]
    func: ToolFunc
    timeout: float = DEFAULT_TIMEOUT
    permission: str | None = None
    # Set by the core when the plugin registers it.
    plugin_id: str = ""

    def __post_init__(self) -> None:
        if not NAME.match(self.name):
            raise ValueError(f"tool name {self.name!r}: letters, digits, _ and - only (≤64)")
        if not (isinstance(self.args, type) and issubclass(self.args, BaseModel)):
            raise TypeError(f"tool {self.name}: args must be a pydantic model class")
        if not self.description.strip():
            raise ValueError(f"tool {self.name} needs a description")
        if self.timeout <= 0:
            raise ValueError(f"tool {self.name}: timeout must be positive")

    def spec(self) -> ToolSpec:
        schema = self.args.model_json_schema()
        schema.pop("title", None)
        schema.setdefault("properties", {})
        return ToolSpec(self.name, self.description.strip(), schema)

    def __repr__(self) -> str:
        return f"Tool({self.name!r}, plugin={self.plugin_id!r})"


def tool(
    func: ToolFunc | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    permission: str | None = None,
) -> Any:
    """Decorator: ``async def f(args: ArgsModel, ctx: ToolContext)`` becomes a :class:`Tool`.

    Usable bare (``@hark.tool``) or with options (``@hark.tool(timeout=2)``)."""

    def build(f: ToolFunc) -> Tool:
        if not inspect.iscoroutinefunction(f):
            raise TypeError(f"tool {f.__name__} must be an async function")
        params = list(inspect.signature(f).parameters.values())
        hints = typing.get_type_hints(f)
        args_model = hints.get(params[0].name) if params else None
        if args_model is None:
            raise TypeError(f"tool {f.__name__}: annotate its first parameter with a model")
        return Tool(
            name=name or f.__name__,
            description=description or inspect.getdoc(f) or "",
            args=args_model,
            func=f,
            timeout=timeout,
            permission=permission,
        )

    return build(func) if func is not None else build


@runtime_checkable
class Toolbox(Protocol):
    """Tools known only at run time. ``tools_for`` is called on every turn; it must be
    quick (no I/O): return what is connected now.

    A toolbox may also have ``status() -> str | None``: a short line when something
    is wrong (a server down), shown next to its plugin in `!plugins`."""

    def tools_for(self, guild_id: int | None) -> Sequence[Tool]: ...


def toolbox_problems(items: Sequence[Any]) -> list[str]:
    """What the toolboxes among ``items`` report as wrong (their ``status()``), for
    listings; a status that fails is reported as such, never raised."""
    problems = []
    for item in items:
        status = getattr(item, "status", None)
        if isinstance(item, Tool) or not callable(status):
            continue
        try:
            line = status()
        except Exception as exc:
            line = f"status failed ({type(exc).__name__})"
        if line:
            problems.append(str(line))
    return problems


@dataclass(slots=True)
class ToolResult:
    call: ToolCall
    content: str
    error: bool = False
    seconds: float = 0.0


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


def _cut(text: str) -> str:
    if len(text) <= MAX_RESULT_CHARS:
        return text
    return text[: MAX_RESULT_CHARS - 30] + f"… [cut: {len(text)} characters]"


def _invalid(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ())) or "arguments"
        problems.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(problems)


async def run_tool(tool: Tool, call: ToolCall, ctx: ToolContext) -> ToolResult:
    """Run one call of ``tool``: check the member's permission, parse and validate the
    arguments, await it within its timeout. Every failure is a result with
    ``error=True`` whose text tells the model what went wrong."""
    loop = asyncio.get_running_loop()
    started = loop.time()

    def result(content: str, *, error: bool = False) -> ToolResult:
        return ToolResult(call, _cut(content), error=error, seconds=loop.time() - started)

    if tool.permission is not None:
        held = ctx.request.permissions
        if held is None or (tool.permission not in held and "administrator" not in held):
            return result(
                f"error: refused: {tool.name} needs the {tool.permission.replace('_', ' ')} "
                "permission, which the member who asked does not have here",
                error=True,
            )
    try:
        raw = json.loads(call.arguments or "{}")
    except ValueError as exc:
        return result(f"error: the arguments are not valid JSON ({exc.msg})", error=True)
    if raw is None:
        raw = {}
    try:
        args = tool.args.model_validate(raw)
    except ValidationError as exc:
        return result(f"error: invalid arguments: {_invalid(exc)}", error=True)
    try:
        async with asyncio.timeout(tool.timeout):
            value = await tool.func(args, ctx)
    except TimeoutError:
        log.warning("tool %s timed out after %gs", tool.name, tool.timeout)
        return result(f"error: {tool.name} did not finish within {tool.timeout:g}s", error=True)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        # The message may carry internals: the model gets the type, the log one line
        # (the traceback only at DEBUG: a failing tool is an expected event).
        log.warning("tool %s failed: %s", tool.name, type(exc).__name__)
        log.debug("tool %s failed", tool.name, exc_info=True)
        message = getattr(exc, "user_message", None) or type(exc).__name__
        return result(f"error: {tool.name} failed ({message})", error=True)
    return result(_text(value))
