"""The tool loop of one turn: model -> tool calls -> results -> model, bounded.

Each round streams the model's reply: text deltas go straight through to the
caller (the user sees them as they come), tool calls are collected. When a round
ends with calls, they run concurrently (:func:`hark.tools.run_tool`: permission,
arguments, timeout, failures all become results the model reads), the assistant
message with its calls and one ``tool`` message per result are appended, and the
next round starts. ``rounds`` bounds the rounds that may call tools, ``seconds``
the time their tools may take in all (a tool's timeout shrinks to what is left).
At either limit the model gets one last round without tools, to answer with what
it has, and the turn gets a note for the user.

The caller is told what runs (``on_status("using roll_die…")``) so a text reply
can show it; voice passes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from hark.providers import Generator, PromptMessage, ToolCall
from hark.tools import Tool, ToolContext, ToolResult, run_tool

log = logging.getLogger(__name__)

StatusCallback = Callable[[str | None], Awaitable[None] | None]

# What the model reads in the last round, after the limit (tool results are text then).
_LAST_ROUND = "[No more tool calls are possible in this turn: answer with what you have.]"


@dataclass(frozen=True, slots=True)
class ToolLimits:
    """How far one turn may go with tools (ChatSettings.tool_rounds / tool_seconds)."""

    rounds: int = 5
    seconds: float = 60.0


def status_text(names: Sequence[str]) -> str:
    """The status line for tools that run now: ``using roll_die, weather…``."""
    return f"using {', '.join(names)}…"


def rounds_note(rounds: int) -> str:
    return f"(stopped after {rounds} round{'s' if rounds != 1 else ''} of tool calls)"


def time_note(seconds: float) -> str:
    return f"(stopped: tool calls used the {seconds:g}s this turn may take)"


def flatten(messages: Sequence[PromptMessage]) -> list[PromptMessage]:
    """Tool calls and results as plain text, for a round that offers no tools: some
    APIs refuse tool messages in a request without tools."""
    out: list[PromptMessage] = []
    for message in messages:
        if message.role == "assistant" and message.tool_calls:
            lines = [message.content] if message.content.strip() else []
            lines += [f"[called {c.name} with {c.arguments}]" for c in message.tool_calls]
            out.append(PromptMessage("assistant", "\n".join(lines), name=message.name))
        elif message.role == "tool":
            out.append(
                PromptMessage("user", f"[result of {message.name or 'a tool'}: {message.content}]")
            )
        else:
            out.append(message)
    return out


class ToolLoop:
    """One turn's rounds. Iterate :meth:`stream` once; then ``notes`` holds what the
    user should be told (a limit was reached), ``results`` every tool result."""

    def __init__(
        self,
        generator: Generator,
        messages: Sequence[PromptMessage],
        *,
        tools: Sequence[Tool],
        limits: ToolLimits,
        context: Callable[[Tool], ToolContext],
        guild_id: int | None = None,
        channel_id: int | None = None,
        on_status: StatusCallback | None = None,
        before_tools: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.generator = generator
        self.messages = list(messages)
        self.limits = limits
        self.context = context
        self.guild_id = guild_id
        self.channel_id = channel_id
        self.on_status = on_status
        # Awaited before each round's tools run: a speculative voice reply waits here
        # until its turn is confirmed, so no tool acts on words that were not final.
        self.before_tools = before_tools
        usable = generator.supports_tools and limits.rounds > 0
        self.tools = {t.name: t for t in tools} if usable else {}
        self.rounds = 0
        self.spent = 0.0
        self.notes: list[str] = []
        self.results: list[ToolResult] = []
        # Everything streamed to the caller so far, all rounds together.
        self.text = ""

    def _separator(self) -> str:
        if not self.text or self.text.endswith("\n\n"):
            return ""
        return "\n" if self.text.endswith("\n") else "\n\n"

    def _remaining(self) -> float:
        return self.limits.seconds - self.spent

    async def stream(self) -> AsyncIterator[str]:
        specs = [t.spec() for t in self.tools.values()]
        messages = self.messages
        while True:
            final = not specs or self.rounds >= self.limits.rounds or self._remaining() <= 0
            if final and self.rounds:
                messages = flatten(messages)
                messages.append(PromptMessage("user", _LAST_ROUND))
                self.notes.append(
                    rounds_note(self.rounds)
                    if self.rounds >= self.limits.rounds
                    else time_note(self.limits.seconds)
                )
            round_text = ""
            calls: list[ToolCall] = []
            stream = self.generator.generate(
                messages,
                tools=() if final else specs,
                guild_id=self.guild_id,
                channel_id=self.channel_id,
            )
            async with contextlib.aclosing(stream):
                async for item in stream:
                    if isinstance(item, ToolCall):
                        calls.append(item)
                        continue
                    if not round_text and (separator := self._separator()):
                        # A later round's answer starts a paragraph of its own.
                        self.text += separator
                        yield separator
                    round_text += item
                    self.text += item
                    yield item
            if not calls:
                return
            self.rounds += 1
            results = await self._run(calls)
            messages = [
                *messages,
                PromptMessage("assistant", round_text, tool_calls=tuple(calls)),
                *(
                    PromptMessage("tool", r.content, name=r.call.name, tool_call_id=r.call.id)
                    for r in results
                ),
            ]

    async def _run(self, calls: list[ToolCall]) -> list[ToolResult]:
        if self.before_tools is not None:
            await self.before_tools()
        known = list(dict.fromkeys(c.name for c in calls if c.name in self.tools))
        if known:
            await self._status(status_text(known))
        loop = asyncio.get_running_loop()
        started = loop.time()
        remaining = max(self._remaining(), 0.001)
        results = await asyncio.gather(*(self._run_one(c, remaining) for c in calls))
        self.spent += loop.time() - started
        for result in results:
            log.info(
                "tool %s in channel %s: %s in %.2fs",
                result.call.name,
                self.channel_id,
                "error" if result.error else "ok",
                result.seconds,
            )
        self.results.extend(results)
        return list(results)

    async def _run_one(self, call: ToolCall, remaining: float) -> ToolResult:
        tool = self.tools.get(call.name)
        if tool is None:
            offered = ", ".join(self.tools) or "none"
            return ToolResult(
                call, f"error: there is no tool called {call.name!r} (tools: {offered})", True
            )
        if tool.timeout > remaining:
            # What is left of the turn's tool time is this call's timeout.
            tool = dataclasses.replace(tool, timeout=remaining)
        return await run_tool(tool, call, self.context(tool))

    async def _status(self, text: str | None) -> None:
        if self.on_status is None:
            return
        result = self.on_status(text)
        if inspect.isawaitable(result):
            await result
