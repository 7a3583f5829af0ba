"""Idle footprint: the bot's RSS with every first-party plugin installed, connected to
the loopback Discord, no model loaded (prints figures; not a test).

    python bench/bench_idle.py

This process runs the loopback Discord server; the bot runs in a child process (``bot
run``'s own code, :func:`hark.cli.run_bot`, with every installed ``hark`` plugin), so
its RSS is the bot's alone. Once connected and settled, the child reads its RSS, then
imports what the plugins used to import when they were imported (numpy, soxr, the
openai / ollama / elevenlabs / MCP / twitchAPI clients) and reads it again: the
difference is what loading those libraries lazily saves, in one run, in one process.
The model runtimes (ctranslate2 and faster-whisper, onnxruntime, piper) were already
loaded only with a model and are left out of both figures.

Target (issue 17): idle RSS <= 100 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import json
import os
import signal
import sys
import tempfile
from pathlib import Path

TARGET_MB = 100.0

#: What the first-party plugins imported at import time before issue 17 (one module per
#: library: each brings its own dependencies along).
EAGER_BEFORE = [
    "numpy",  # hark.audio; stt_whisper, turn_smart
    "soxr",  # hark.audio; turn_smart
    "openai",  # llm_openrouter; stt_whisper's OpenAI mode
    "ollama",  # llm_ollama (httpx with it)
    "elevenlabs.client",  # tts_elevenlabs
    "mcp.client.streamable_http",  # mcp (anyio, httpx2, starlette, uvicorn)
    "twitchAPI.twitch",  # twitch
]
#: Reported if present in the idle bot: none should be, with no model loaded.
HEAVY = [
    "ctranslate2",
    "faster_whisper",
    "onnxruntime",
    "piper",
    "numpy",
    "soxr",
    "scipy",
    "openai",
    "ollama",
    "httpx",
    "elevenlabs",
    "azure",
    "mcp",
    "twitchAPI",
]


def rss_mb(pid: int | None = None) -> float:
    """Resident set size in MB (psutil if installed, else /proc's VmRSS)."""
    try:
        import psutil
    except ImportError:
        status = Path(f"/proc/{pid or 'self'}/status").read_text()
        kb = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(kb) / 1024
    return psutil.Process(pid).memory_info().rss / (1024 * 1024)


# -- the child: the bot ----------------------------------------------------------


async def child(settle: float) -> int:
    from hark.cli import run_bot
    from hark.config import load_config

    config = load_config(dotenv=None)
    ready = asyncio.Event()
    bot = asyncio.create_task(run_bot(config, ready=ready))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({bot, waiter}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if not ready.is_set():
        waiter.cancel()
        print(json.dumps({"error": "the bot did not connect"}), flush=True)
        return 1
    await asyncio.sleep(settle)  # guild sync, command sync, background start-up
    gc.collect()
    idle = rss_mb()
    loaded = sorted(m for m in HEAVY if m in sys.modules)
    costs = {}
    for name in EAGER_BEFORE:
        before = rss_mb()
        importlib.import_module(name)
        costs[name] = rss_mb() - before
    gc.collect()
    eager = rss_mb()
    # Last: walking the gc allocates a list of every object, which would count as RSS.
    plugins = sorted(
        info.id
        for info in _runtime_plugins()
        if getattr(info, "status", None) == "loaded" and not getattr(info, "builtin", False)
    )
    report = {"idle": idle, "eager": eager, "loaded": loaded, "plugins": plugins, "costs": costs}
    print(json.dumps(report), flush=True)
    signal.raise_signal(signal.SIGTERM)  # run_bot's own clean shutdown
    with contextlib.suppress(Exception):
        await asyncio.wait_for(bot, 15)
    return 0


def _runtime_plugins() -> list:
    # The running bot's plugin manager, found through the gc (run_bot keeps it local).
    from hark.plugins import PluginManager

    managers = [o for o in gc.get_objects() if isinstance(o, PluginManager)]
    return list(managers[0].plugins.values()) if managers else []


# -- the parent: the loopback Discord --------------------------------------------


async def measure(settle: float) -> dict:
    from hark.testing.discord import FakeDiscord

    async with FakeDiscord() as server:
        guild = server.create_guild("Bench")
        server.create_text_channel(guild, "general")
        server.create_voice_channel(guild, "Voice")
        server.create_member(guild, "alice")
        with tempfile.TemporaryDirectory() as tmp:
            env = {
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("DISCORD_", "HARK_", "BOT_"))
            }
            env.update(
                DISCORD_BOT_TOKEN=server.bot_token,
                DISCORD_API_BASE=server.api_base,
                DISCORD_GATEWAY_URL=str(server.gateway_url),
                HARK_DATA_DIR=str(Path(tmp) / "data"),
                HARK_LOG_LEVEL="WARNING",
            )
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--child",
                "--settle",
                str(settle),
                cwd=tmp,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(proc.communicate(), 120)
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"the bot reported nothing:\n{err.decode()[-2000:]}")
    return json.loads(lines[-1])


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--settle", type=float, default=2.0, help="seconds after connecting")
    args = parser.parse_args()
    if args.child:
        return await child(args.settle)

    result = await measure(args.settle)
    if "error" in result:
        print(result["error"])
        return 1
    idle, eager = result["idle"], result["eager"]
    print(f"plugins loaded           : {', '.join(result['plugins'])}")
    print(f"heavy modules when idle  : {', '.join(result['loaded']) or 'none'}")
    print(f"idle RSS, connected      : {idle:.1f} MB (target <= {TARGET_MB:.0f} MB)")
    print(f"with the eager imports   : {eager:.1f} MB (what importing the plugins loaded before)")
    print(f"saved by lazy loading    : {eager - idle:.1f} MB")
    for name, cost in result["costs"].items():
        print(f"  import {name:<27}: +{cost:.1f} MB")
    return 0 if idle <= TARGET_MB else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
