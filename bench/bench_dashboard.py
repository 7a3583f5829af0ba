"""Benchmark what an idle dashboard costs in CPU (prints figures; not a test).

    python bench/bench_dashboard.py [--seconds 30]

In one run, in one process, the same bot on the loopback Discord, idle (connected,
heartbeating, no messages), for ``--seconds`` each:
1. without the dashboard (the baseline);
2. with the dashboard serving and nobody looking (its only timer: the lag probe);
3. with the dashboard and a viewer: one open live stream (a tick every 5 s) and a
   Prometheus scrape of /metrics every 15 s;
4. the baseline again (the two baselines show the noise).

CPU is this process's (time.process_time: user + system, every thread), as a
percentage of one core; the dashboard's cost is the difference to the baseline.
The loopback server runs in the same process, so the baseline includes its work.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from hark.config import Secret
from hark.testing.fakes import EchoGenerator, fake_plugin
from hark.testing.harness import BotHarness

TOKEN = "bench-dashboard-token-0123456789"
SCRAPE_EVERY = 15.0


async def idle_cpu(seconds: float, *, dashboard: bool, viewer: bool = False) -> float:
    """CPU % of one core the process used while the bot sat idle for ``seconds``."""
    config = {"rate_limit": "0"}
    if dashboard:
        config |= {"dashboard": "127.0.0.1:0", "dashboard_token": Secret(TOKEN)}
    with tempfile.TemporaryDirectory() as tmp:
        h = BotHarness(Path(tmp), plugins={"fake_llm": fake_plugin(EchoGenerator())}, config=config)
        await h.start()
        session: aiohttp.ClientSession | None = None
        tasks: list[asyncio.Task[None]] = []
        try:
            if viewer:
                session = aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"})
                base = h.bot.dashboard.url.rstrip("/")
                tasks = [
                    asyncio.create_task(_watch(session, base + "/api/stream")),
                    asyncio.create_task(_scrape(session, base + "/metrics")),
                ]
            await asyncio.sleep(2.0)  # start-up settles (guild sync, first heartbeats)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            await asyncio.sleep(seconds)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if session is not None:
                await session.close()
            await h.close()
    return cpu / wall * 100


async def _watch(session: aiohttp.ClientSession, url: str) -> None:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=None)) as response:
        async for _ in response.content:
            pass


async def _scrape(session: aiohttp.ClientSession, url: str) -> None:
    while True:
        async with session.get(url) as response:
            await response.read()
        await asyncio.sleep(SCRAPE_EVERY)


async def main(seconds: float) -> int:
    print(f"idle CPU, {seconds:.0f} s per phase (percent of one core, this process)")
    base1 = await idle_cpu(seconds, dashboard=False)
    print(f"  without the dashboard:          {base1:6.3f} %", flush=True)
    idle = await idle_cpu(seconds, dashboard=True)
    print(f"  with the dashboard, no viewer:  {idle:6.3f} %", flush=True)
    viewed = await idle_cpu(seconds, dashboard=True, viewer=True)
    print(f"  with a live page + scrapes:     {viewed:6.3f} %", flush=True)
    base2 = await idle_cpu(seconds, dashboard=False)
    print(f"  without the dashboard, again:   {base2:6.3f} %", flush=True)
    base = (base1 + base2) / 2
    ratio = idle / base if base else float("inf")
    print(
        f"dashboard idle cost: {idle - base:+.3f} percentage points of one core "
        f"({ratio:.2f}x the baseline); with a viewer: {viewed - base:+.3f} points; "
        f"baseline noise: {abs(base1 - base2):.3f} points"
    )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each phase")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(min(max(args.seconds, 1.0), 300.0))))
