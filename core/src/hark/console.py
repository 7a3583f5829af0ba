"""``bot console``: talk to the configured persona + history + generator in a terminal.

The same pipeline as Discord (context providers, the server-less provider choice,
history in the database under channel 0), without Discord. Lines starting with
``/`` are commands: ``/reset`` forgets the conversation, ``/quit`` leaves.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from typing import TextIO

from hark.config import Config
from hark.providers import ContextRequest
from hark.providers.errors import ProviderError
from hark.runtime import Runtime

CONSOLE_CHANNEL = 0
HELP = "Type a message and press Enter. /reset forgets the conversation, /quit leaves."


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
            try:
                turn = await runtime.conversation.prepare(request)
                async for delta in turn.stream():
                    if not parts:
                        print(f"{bot_name}> ", end="", file=stdout, flush=True)
                    parts.append(delta)
                    print(delta, end="", file=stdout, flush=True)
                if parts:
                    print(file=stdout, flush=True)
            except ProviderError as exc:
                # A cut-off reply is not recorded, like in Discord.
                print(
                    f"{chr(10) if parts else ''}error: {exc.user_message}", file=stdout, flush=True
                )
                continue
            reply = "".join(parts)
            if reply.strip():
                await runtime.conversation.record(turn, reply)
    finally:
        await runtime.close()
    return 0
