"""Benchmark the text path against a bare discord.py bot (prints figures; not a test).

    python bench/bench_text.py [--rounds 3] [--messages 200] [--channels 100] [--rate 100]
        [--llm openai|echo]

The loopback Discord server runs in this process; each bot runs in a child process
of its own (``--child hark`` / ``--child bare``), so the bot's CPU, memory and
event-loop lag are its own, not the server's. Both bots get the same instant model:

- ``--llm openai`` (the default, the issue's set-up): a loopback OpenAI-compatible
  server in this process (llm_openrouter's test fake) that streams back the last
  user message. Hark uses its ``llm_openrouter`` plugin; the bare bot is discord.py
  plus the ``openai`` client, streaming the same request and posting the text once.
- ``--llm echo``: Hark gets an in-process ``EchoGenerator`` (one delta), the bare bot
  echoes the text without any model: the harshest comparison, Hark's own overhead.

Both post one ``channel.send`` with a reference, as Hark does. Rounds alternate
(bare, Hark, Hark, bare, ...); the report gives each round and the medians.

Per bot and round:
1. sequential round trips (message -> reply), ``--messages`` of them: p50 and p99;
2. sustained: 2x``--messages`` spread over ``--channels`` channels, all in flight
   at once: messages per second;
3. paced: ``--rate`` messages per second for two seconds: the bot's event-loop lag
   p99 (a 5 ms ticker inside the bot process, measuring how late it wakes);
4. CPU per message: ``time.process_time()`` of the bot process over (1)-(3), per
   message (the server's work is not in it); peak RSS (``ru_maxrss``) at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import re
import resource
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

import discord
import yarl

TRIGGER = "robot"


def generator_plugin() -> types.ModuleType:
    from hark import hookimpl
    from hark.testing.fakes import EchoGenerator

    module = types.ModuleType("instant_llm")

    @hookimpl
    def register_generators(register):
        # One delta per reply: the generator costs ~nothing, the pipeline is measured.
        register(EchoGenerator(chunk_size=10_000))

    module.register_generators = register_generators
    return module


# -- the bot side (a child process) ------------------------------------------------


def peak_rss_kib() -> int:
    """This process's peak resident set (VmHWM). Not ``ru_maxrss``: Linux carries that
    over ``execve`` from the parent that forked us (the server, here)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class Probe:
    """The bot process's own figures, reported on each "mark" line from the parent."""

    def __init__(self) -> None:
        self.lag: list[float] = []

    async def tick(self, period: float = 0.005) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(period)
            self.lag.append(time.perf_counter() - started - period)

    def mark(self) -> dict[str, Any]:
        lag, self.lag = sorted(self.lag), []
        p99 = lag[min(len(lag) - 1, int(len(lag) * 0.99))] if lag else 0.0
        return {
            "cpu": time.process_time(),
            "rss_peak_kib": peak_rss_kib(),
            "lag_p99": p99,
            "lag_max": lag[-1] if lag else 0.0,
        }


# The model both bots ask in ``--llm openai`` mode, and its key (the fake checks it).
OPENAI_MODEL = "bench/instant"
OPENAI_KEY = "sk-bench"


def openai_plugin() -> Any:
    """Hark's llm_openrouter plugin, as its entry point declares it."""
    from importlib.metadata import entry_points

    (point,) = [p for p in entry_points(group="hark") if p.name == "llm_openrouter"]
    return point.load()


def bare_answer(openai_url: str | None):
    """What the bare bot answers with: the model's streamed reply, or an echo."""
    if not openai_url:

        async def echo(text: str) -> str:
            return text

        return echo
    import openai

    client = openai.AsyncOpenAI(base_url=openai_url, api_key=OPENAI_KEY)

    async def ask(text: str) -> str:
        stream = await client.chat.completions.create(
            model=OPENAI_MODEL,
            messages=[
                {"role": "system", "content": "You are a bot in a Discord server."},
                {"role": "user", "content": text},
            ],
            stream=True,
        )
        parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        return "".join(parts)

    return ask


async def child(kind: str, token: str, api_base: str, gateway: str, data_dir: str) -> None:
    # What hark.bot.point_discord_at does, without importing Hark into the bare bot.
    discord.http.Route.BASE = api_base.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway)
    openai_url = os.environ.get("BENCH_OPENAI_URL")
    if kind == "hark":
        from hark.bot import HarkBot
        from hark.config import Config, Secret
        from hark.runtime import Runtime
        from hark.testing.harness import isolated_manager

        config = Config(
            token=Secret(token), api_base=api_base, gateway_url=gateway, data_dir=Path(data_dir)
        )
        config.trigger_names = [TRIGGER]
        config.rate_limit = "0"
        config.sync_commands = False
        if openai_url:
            os.environ.update(
                OPENROUTER_BASE_URL=openai_url,
                OPENROUTER_API_KEY=OPENAI_KEY,
                OPENROUTER_MODEL=OPENAI_MODEL,
            )
            plugins = {"llm_openrouter": openai_plugin()}
        else:
            plugins = {"instant_llm": generator_plugin()}
        runtime = Runtime(config, manager=isolated_manager(plugins))
        client: discord.Client = HarkBot(runtime, guild_ready_timeout=0.05)
    else:
        intents = discord.Intents.default()  # the intents HarkBot asks for
        intents.message_content = intents.members = intents.voice_states = True
        client = discord.Client(intents=intents, guild_ready_timeout=0.05)
        answer = bare_answer(openai_url)

        @client.event
        async def on_message(message: discord.Message) -> None:
            if not message.author.bot and TRIGGER in message.content:
                await message.channel.send(
                    await answer(message.content),
                    reference=message,
                    allowed_mentions=discord.AllowedMentions.none(),
                )

    probe = Probe()
    ticker = asyncio.create_task(probe.tick())
    await client.login(token)
    task = asyncio.create_task(client.connect())
    await client.wait_until_ready()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("ready", flush=True)
    # BENCH_PROFILE=<path>: cProfile the bot process from the first mark to the last.
    profile_to = os.environ.get("BENCH_PROFILE")
    profiler = None
    while line := (await reader.readline()).strip():
        if line == b"mark":
            if profile_to and profiler is None:
                import cProfile

                profiler = cProfile.Profile()
                profiler.enable()
            print(json.dumps(probe.mark()), flush=True)
        else:  # "stop"
            break
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(f"{profile_to}.{kind}")
    ticker.cancel()
    await client.close()
    await asyncio.wait_for(task, 10)
    print(json.dumps(probe.mark()), flush=True)


# -- the driver (this process: the loopback server) ---------------------------------


class Bot:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def line(self) -> str:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), 60)
        if not raw:
            raise RuntimeError("the bot process ended")
        return raw.decode().strip()

    async def mark(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"mark\n")
        await self.proc.stdin.drain()
        return json.loads(await self.line())

    async def stop(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"stop\n")
        await self.proc.stdin.drain()
        final = json.loads(await self.line())
        await asyncio.wait_for(self.proc.wait(), 20)
        return final


async def start_bot(kind: str, server: Any, data_dir: str, openai_url: str | None) -> Bot:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--child",
        kind,
        server.bot_token,
        server.api_base,
        server.gateway_url,
        data_dir,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "BENCH_OPENAI_URL": openai_url or ""},
    )
    bot = Bot(proc)
    while (line := await bot.line()) != "ready":
        print(f"  [{kind}] {line}", file=sys.stderr)
    return bot


async def round_trips(server: Any, channel: Any, author: Any, n: int, text: str) -> list[float]:
    samples = []
    for i in range(n):
        started = time.perf_counter()
        waiter = asyncio.create_task(
            server.wait_for_message(channel, author=server.bot_user, timeout=10)
        )
        await asyncio.sleep(0)
        await server.post_message(channel, author, f"{text} {i}")
        await waiter
        samples.append(time.perf_counter() - started)
    return samples


async def burst(
    server: Any, targets: list[Any], author: Any, total: int, rate: float | None
) -> float:
    """Post ``total`` messages over ``targets`` (all at once, or ``rate`` per second)
    and wait for every reply; returns the seconds it took."""
    tag = f"{time.monotonic_ns()}"
    waiters = [
        asyncio.create_task(
            server.wait_for_message(
                targets[i % len(targets)],
                author=server.bot_user,
                timeout=60,
                check=lambda m, t=f"#{tag}-{i}#": t in m.content,
            )
        )
        for i in range(total)
    ]
    await asyncio.sleep(0)
    started = time.perf_counter()
    for i in range(total):
        if rate:
            await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
        await server.post_message(targets[i % len(targets)], author, f"{TRIGGER} load #{tag}-{i}#")
    await asyncio.gather(*waiters)
    return time.perf_counter() - started


class _Forgetful(list):
    """A request log that keeps nothing (the fake records every request)."""

    def append(self, item: Any) -> None:
        pass


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def openai_server() -> Any:
    """llm_openrouter's loopback OpenAI-compatible server, echoing the last user message."""
    tests = Path(__file__).resolve().parents[1] / "plugins" / "llm_openrouter" / "tests"
    sys.path.insert(0, str(tests))
    from fake_openai_chat import FakeOpenAIServer

    def echo(request: Any) -> str:
        users = [m for m in request.messages if m.get("role") == "user"]
        content = users[-1].get("content", "") if users else ""
        return content if isinstance(content, str) else json.dumps(content)

    return FakeOpenAIServer(reply=echo, api_key=OPENAI_KEY, accept_any_model=True)


async def one_round(kind: str, args: argparse.Namespace) -> dict[str, float]:
    from hark.testing.discord import FakeDiscord

    with tempfile.TemporaryDirectory() as tmp:
        async with FakeDiscord() as server, contextlib.AsyncExitStack() as stack:
            openai_url = None
            if args.llm == "openai":
                model = await stack.enter_async_context(openai_server())
                model.requests = _Forgetful()  # 1,400 requests a round: keep none
                openai_url = model.base_url
            guild = server.create_guild("Bench")
            channel = server.create_text_channel(guild, "general")
            member = server.create_member(guild, "alice")
            targets = [server.create_text_channel(guild, f"c{i}") for i in range(args.channels)]
            bot = await start_bot(kind, server, tmp, openai_url)
            try:
                await round_trips(server, channel, member, 10, f"{TRIGGER} warm-up")
                await asyncio.sleep(0.5)  # start-up work (status, recovery) is over
                before = await bot.mark()
                since = len(server.requests)
                sequential = await round_trips(
                    server, channel, member, args.messages, f"{TRIGGER} hello"
                )
                total = 2 * args.messages
                elapsed = await burst(server, targets, member, total, None)
                await bot.mark()  # lag so far is not the paced phase's
                paced_n = int(args.rate * 2)
                await burst(server, targets, member, paced_n, args.rate)
                await asyncio.sleep(0.3)  # writes behind the reply are part of the cost
                after = await bot.mark()
                calls = collections.Counter(
                    f"{r.method} {re.sub(r'[0-9]{5,}', '{id}', r.path)}"
                    for r in server.requests[since:]
                )
            finally:
                final = await bot.stop()
    messages = args.messages + total + paced_n
    return {
        "cpu_ms": (after["cpu"] - before["cpu"]) * 1000 / messages,
        "p50_ms": statistics.median(sequential) * 1000,
        "p99_ms": pct(sequential, 0.99) * 1000,
        "rate": total / elapsed,
        "lag_p99_ms": after["lag_p99"] * 1000,
        "rss_mib": final["rss_peak_kib"] / 1024,
        "rest_calls": sum(calls.values()) / messages,
        # Per route, per message: what Discord was asked beyond the one reply POST.
        **{f"rest {route}": n / messages for route, n in sorted(calls.items())},
    }


ROWS = [
    ("cpu_ms", "bot CPU per message (ms)", "lower"),
    ("rate", "throughput, all in flight (msg/s)", "higher"),
    ("p50_ms", "p50 round trip (ms)", "lower"),
    ("p99_ms", "p99 round trip (ms)", "lower"),
    ("lag_p99_ms", "event-loop lag p99 at --rate (ms)", "lower"),
    ("rss_mib", "peak RSS (MiB)", "lower"),
    ("rest_calls", "REST calls per message", "lower"),
]


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--channels", type=int, default=100)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--llm", choices=["openai", "echo"], default="openai")
    parser.add_argument("--json", help="also write every round's figures here")
    args = parser.parse_args()

    results: dict[str, list[dict[str, float]]] = {"bare": [], "hark": []}
    for r in range(args.rounds):
        order = ["bare", "hark"] if r % 2 == 0 else ["hark", "bare"]
        for kind in order:
            figures = await one_round(kind, args)
            results[kind].append(figures)
            shown = ", ".join(f"{k} {v:.2f}" for k, v in figures.items())
            print(f"round {r + 1} {kind:<4}: {shown}", flush=True)
    print(
        f"\nmedians of {args.rounds} rounds, --llm {args.llm}"
        " (bots in child processes, server in this one):"
    )
    print(f"{'measure':<36} {'hark':>9} {'bare':>9} {'ratio':>7}")
    for key, label, _better in ROWS:
        hark = statistics.median(x[key] for x in results["hark"])
        bare = statistics.median(x[key] for x in results["bare"])
        ratio = hark / bare if bare else float("nan")
        print(f"{label:<36} {hark:9.2f} {bare:9.2f} {ratio:6.2f}x")
    if args.json:
        await asyncio.to_thread(Path(args.json).write_text, json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        asyncio.run(child(*sys.argv[2:7]))
        sys.exit(0)
    sys.exit(asyncio.run(main()))
