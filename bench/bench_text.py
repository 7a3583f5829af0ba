"""Benchmark the text path on the loopback Discord server (prints figures; not a test).

    python bench/bench_text.py [--messages 200] [--channels 100]

Measured in one run, in one process (the loopback server shares the event loop,
so absolute numbers include its work; the ratio is what to watch):
1. per-message cost: sequential message -> reply round trips through HarkBot with an
   instant generator, against a bare discord.py echo bot on the same server;
2. sustained throughput: messages spread over N channels, all in flight at once;
3. event-loop lag p99 while (2) runs (a 5 ms ticker measuring how late it wakes).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

import discord

from hark import hookimpl
from hark.testing.discord import FakeDiscord
from hark.testing.fakes import EchoGenerator
from hark.testing.harness import BotHarness


def generator_plugin() -> types.ModuleType:
    module = types.ModuleType("instant_llm")

    @hookimpl
    def register_generators(register):
        # One delta per reply: the generator costs ~nothing, the pipeline is measured.
        register(EchoGenerator(chunk_size=10_000))

    module.register_generators = register_generators
    return module


async def round_trips(server: FakeDiscord, channel, author, n: int, text: str) -> list[float]:
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


async def bench_echo_bot(n: int) -> list[float]:
    async with FakeDiscord() as server:
        guild = server.create_guild("Bench")
        channel = server.create_text_channel(guild, "general")
        member = server.create_member(guild, "alice")
        saved = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        from hark.bot import default_intents, point_discord_at

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
            await round_trips(server, channel, member, 10, "robot warm-up")
            return await round_trips(server, channel, member, n, "robot hello")
        finally:
            await client.close()
            await asyncio.wait_for(task, 10)
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved


async def loop_lag(stop: asyncio.Event, samples: list[float], period: float = 0.005) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(period)
        samples.append(time.perf_counter() - started - period)


async def bench_hark(
    n: int, channels: int, data_dir: Path
) -> tuple[list[float], float, list[float], int]:
    config = {"trigger_names": ["robot"], "rate_limit": "0"}
    async with BotHarness(
        data_dir, plugins={"instant_llm": generator_plugin()}, config=config
    ) as h:
        await round_trips(h.server, h.channel, h.member, 10, "robot warm-up")
        sequential = await round_trips(h.server, h.channel, h.member, n, "robot hello")

        targets = [h.server.create_text_channel(h.guild, f"c{i}") for i in range(channels)]
        await asyncio.sleep(0.5)  # CHANNEL_CREATE reaches the bot
        total = max(n, channels) * 2
        stop, lag = asyncio.Event(), []
        ticker = asyncio.create_task(loop_lag(stop, lag))
        started = time.perf_counter()
        waiters = []
        for i in range(total):
            channel = targets[i % channels]
            waiters.append(
                asyncio.create_task(
                    h.server.wait_for_message(
                        channel,
                        author=h.server.bot_user,
                        timeout=60,
                        check=lambda m, tag=f"#{i}#": tag in m.content,
                    )
                )
            )
        await asyncio.sleep(0)
        for i in range(total):
            await h.server.post_message(targets[i % channels], h.member, f"robot load #{i}#")
        await asyncio.gather(*waiters)
        elapsed = time.perf_counter() - started
        stop.set()
        await ticker
        return sequential, total / elapsed, lag, total


def describe(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"median {statistics.median(samples) * 1000:6.2f} ms, p99 {p99 * 1000:6.2f} ms"


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--channels", type=int, default=100)
    args = parser.parse_args()

    echo = await bench_echo_bot(args.messages)
    with tempfile.TemporaryDirectory() as tmp:
        hark, rate, lag, total = await bench_hark(args.messages, args.channels, Path(tmp))
    ratio = statistics.median(hark) / statistics.median(echo)
    lag_sorted = sorted(lag)
    lag_p99 = (
        lag_sorted[min(len(lag_sorted) - 1, int(len(lag_sorted) * 0.99))] if lag else float("nan")
    )
    print(f"bare discord.py echo bot : {describe(echo)}  ({args.messages} round trips)")
    print(f"hark text path           : {describe(hark)}  ({args.messages} round trips)")
    print(f"per-message cost ratio   : {ratio:.2f}x the echo bot (median round trip)")
    label = f"sustained, {args.channels} channels"
    print(f"{label:<25}: {rate:.1f} messages/s ({total} messages, all in flight)")
    print(f"event-loop lag under load: p99 {lag_p99 * 1000:.2f} ms, max {max(lag) * 1000:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
