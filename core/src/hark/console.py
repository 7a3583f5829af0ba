"""``bot console``: talk to the configured persona + history + generator in a terminal.

The same pipeline as Discord (context providers, the server-less provider choice,
history in the database under channel 0), without Discord. Lines starting with
``/`` are commands: ``/reset`` forgets the conversation, ``/stats`` shows the recent
turns' timings (the core's turn metrics store, as the dashboard reads it), ``/quit``
leaves.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from typing import TextIO

from hark.config import Config
from hark.metrics import TurnClock, TurnMetrics
from hark.providers import ContextRequest
from hark.providers.errors import ProviderError
from hark.runtime import Runtime

CONSOLE_CHANNEL = 0
HELP = (
    "Type a message and press Enter. /reset forgets the conversation, /stats shows "
    "the recent turns' timings, /quit leaves."
)


def render_stats(metrics: TurnMetrics, limit: int = 10) -> str:
    """The latest turns, newest first: outcome, time to first token, total."""
    turns = metrics.recent_turns(limit)
    if not turns:
        return "(no turns yet)"
    first = metrics.first_token_percentiles()

    def ms(seconds: float | None) -> str:
        return "-" if seconds is None else f"{seconds * 1000:.0f} ms"

    lines = [
        f"(turns: {sum(metrics.turn_counts.values())}; first token p50 {ms(first['p50_s'])},"
        f" p95 {ms(first['p95_s'])})"
    ]
    for t in turns:
        lines.append(
            f"  #{t.id} {t.kind} {t.outcome}: first token {ms(t.first_token_s)},"
            f" total {ms(t.total_s)} ({t.provider or '-'})"
        )
    return "\n".join(lines)


async def run_console(
    config: Config, *, stdin: TextIO | None = None, stdout: TextIO | None = None
) -> int:
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    interactive = stdin.isatty()
    runtime = Runtime(config)
    await runtime.open()
    loop = asyncio.get_running_loop()
    user = getpass.getuser() or "you"
    bot_name = (config.trigger_names or ["Hark"])[0]
    try:
        if interactive:
            print(HELP, file=stdout)
        while True:
            if interactive:
                print(f"{user}> ", end="", file=stdout, flush=True)
            # input() blocks: read in a thread so the event loop stays free.
            line = await loop.run_in_executor(None, stdin.readline)
            if not line:
                break
            text = line.strip()
            if not text:
                continue
            if text in ("/quit", "/exit"):
                break
            if text == "/stats":
                print(render_stats(runtime.conversation.metrics), file=stdout, flush=True)
                continue
            if text == "/reset":
                removed = await runtime.history.clear(CONSOLE_CHANNEL)
                print(f"(history cleared: {removed} entries)", file=stdout, flush=True)
                continue
            request = ContextRequest(
                text=text,
                channel_id=CONSOLE_CHANNEL,
                user_name=user,
                bot_name=bot_name,
                kind="console",
            )
            parts: list[str] = []
            metrics, clock, generator = runtime.conversation.metrics, TurnClock(), None
            try:
                turn = await runtime.conversation.prepare(request)
                generator = turn.generator.id
                async for delta in turn.stream():
                    clock.first()
                    if not parts:
                        print(f"{bot_name}> ", end="", file=stdout, flush=True)
                    parts.append(delta)
                    print(delta, end="", file=stdout, flush=True)
                if parts:
                    print(file=stdout, flush=True)
            except ProviderError as exc:
                metrics.text_turn(request, clock, "failed", provider=generator, error=str(exc))
                # A cut-off reply is not recorded, like in Discord.
                print(
                    f"{chr(10) if parts else ''}error: {exc.user_message}", file=stdout, flush=True
                )
                continue
            reply = "".join(parts)
            metrics.text_turn(
                request, clock, "delivered" if reply.strip() else "failed", provider=generator
            )
            if reply.strip():
                await runtime.conversation.record(turn, reply)
    finally:
        await runtime.close()
    return 0
