"""Profile the text path on the loopback Discord server (prints a report; not a test).

    python bench/profile_text.py [--messages 300] [--top 25] [--sort tottime]

Drives the same set-up as ``bench/bench_text.py`` (an instant generator, one delta
per reply) and reports, for Hark and for the bare discord.py echo bot:

1. the REST calls Discord received per message (the loopback server's request log),
   by method and route;
2. cProfile of the message -> reply round trips: CPU attributed by package (Hark,
   discord.py, aiohttp, aiosqlite, the loopback server, asyncio, logging, pydantic...)
   from each function's own time, and the top functions by ``--sort``.

The loopback server shares the process, so its share is listed apart: what is left
is the bot's.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import io
import pstats
import re
import sys
import tempfile
import time
from pathlib import Path

import discord

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_text import generator_plugin, round_trips

from hark.bot import default_intents, point_discord_at
from hark.testing.discord import FakeDiscord
from hark.testing.harness import BotHarness

# Package of a profiled function, from its file name (first match wins).
_BUCKETS = [
    ("loopback server", re.compile(r"hark/testing/")),
    ("hark", re.compile(r"hark/")),
    ("discord.py", re.compile(r"/discord/")),
    ("aiohttp/yarl/multidict", re.compile(r"/(aiohttp|yarl|multidict|aiosignal|frozenlist)/")),
    ("aiosqlite/sqlite3", re.compile(r"/(aiosqlite|sqlite3)/|_sqlite3")),
    ("pydantic", re.compile(r"/pydantic")),
    ("logging", re.compile(r"/logging/")),
    ("json", re.compile(r"/json/|_json")),
    ("asyncio", re.compile(r"/asyncio/|_asyncio")),
    ("threading/queue", re.compile(r"/(threading|queue)\.py|_thread|_queue")),
]


IDLE = "idle (waiting in epoll)"


def bucket(filename: str, name: str) -> str:
    if filename == "~" and "poll" in name and "select" in name:
        return IDLE
    where = f"{filename}:{name}"
    for label, pattern in _BUCKETS:
        if pattern.search(where):
            return label
    if filename == "~":  # a builtin: named like <method 'acquire' of '_thread.lock'>
        for label, pattern in _BUCKETS:
            if pattern.search(name):
                return label
        return "builtins"
    return "other"


def route_of(path: str) -> str:
    return re.sub(r"\d{5,}", "{id}", path)


def count_requests(server: FakeDiscord, since: int, messages: int) -> list[str]:
    counts = collections.Counter(f"{r.method} {route_of(r.path)}" for r in server.requests[since:])
    lines = [f"  {n / messages:5.2f} per message  {route}" for route, n in counts.most_common()]
    total = sum(counts.values()) / messages
    return [*lines, f"  {total:5.2f} per message  (all REST calls)"]


async def echo_bot_requests(n: int) -> list[str]:
    async with FakeDiscord() as server:
        guild = server.create_guild("Bench")
        channel = server.create_text_channel(guild, "general")
        member = server.create_member(guild, "alice")
        saved = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        point_discord_at(server.api_base, server.gateway_url)
        client = discord.Client(intents=default_intents())

        @client.event
        async def on_message(message: discord.Message) -> None:
            if not message.author.bot:
                await message.channel.send(
                    message.content,
                    reference=message,
                    allowed_mentions=discord.AllowedMentions.none(),
                )

        await client.login(server.bot_token)
        task = asyncio.create_task(client.connect())
        await client.wait_until_ready()
        try:
            await round_trips(server, channel, member, 5, "robot warm-up")
            since = len(server.requests)
            await round_trips(server, channel, member, n, "robot hello")
            return count_requests(server, since, n)
        finally:
            await client.close()
            await asyncio.wait_for(task, 10)
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved


async def hark_profile(n: int, data_dir: Path) -> tuple[list[str], cProfile.Profile, float, float]:
    config = {"trigger_names": ["robot"], "rate_limit": "0"}
    async with BotHarness(
        data_dir, plugins={"instant_llm": generator_plugin()}, config=config
    ) as h:
        await round_trips(h.server, h.channel, h.member, 10, "robot warm-up")
        since = len(h.server.requests)
        profile = cProfile.Profile()
        cpu, wall = time.process_time(), time.perf_counter()
        profile.enable()
        await round_trips(h.server, h.channel, h.member, n, "robot hello")
        profile.disable()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        await asyncio.sleep(0.3)  # writes behind the reply land (and are not counted twice)
        return count_requests(h.server, since, n), profile, cpu, wall


def by_package(stats: pstats.Stats) -> list[tuple[str, float]]:
    totals: collections.Counter[str] = collections.Counter()
    for (filename, _line, name), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        totals[bucket(filename, name)] += tt
    return totals.most_common()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--sort", default="tottime", choices=["tottime", "cumulative"])
    parser.add_argument("--dump", help="also write the raw profile here (pstats format)")
    args = parser.parse_args()

    echo = await echo_bot_requests(args.messages)
    with tempfile.TemporaryDirectory() as tmp:
        hark, profile, cpu, wall = await hark_profile(args.messages, Path(tmp))
    print("REST calls the bare echo bot makes:")
    print("\n".join(echo))
    print("REST calls Hark makes:")
    print("\n".join(hark))
    stats = pstats.Stats(profile)
    if args.dump:
        stats.dump_stats(args.dump)
    n = args.messages
    print(
        f"\nprofiled {n} sequential round trips: {cpu * 1000 / n:.2f} ms CPU and "
        f"{wall * 1000 / n:.2f} ms wall per message (whole process, profiler on)"
    )
    packages = by_package(stats)
    total = sum(t for label, t in packages if label != IDLE) or 1.0
    server = dict(packages).get("loopback server", 0.0)
    print("own time by package (per message):")
    for label, seconds in packages:
        share = "" if label == IDLE else f"{seconds / total:5.1%}"
        print(f"  {seconds * 1000 / n:6.3f} ms  {share:>5}  {label}")
    print(
        f"  bot's share (not idle, without the loopback server's own code): "
        f"{(total - server) * 1000 / n:.3f} ms per message"
    )
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats(args.sort).print_stats(args.top)
    text = out.getvalue()
    print(text[text.find("   ncalls") :] if "   ncalls" in text else text)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
