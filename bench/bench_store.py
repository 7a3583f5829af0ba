"""Benchmark history's write and read cost per message, SQLite against PostgreSQL
(prints figures; not a test).

    python bench/bench_store.py [--rounds 3] [--messages 2000] [--quiet-messages 300]
                                [--channels 20] [--depth 20]

In one run, on this machine: a fresh SQLite file in a temporary folder per round,
and a throwaway PostgreSQL server (``hark.testing.postgres.PostgresCluster``: initdb
and pg_ctl on a free loopback port) with a fresh database per round, both used
through the real :class:`hark.chat.history.HistoryStore` the bot writes with. A
"message" is one exchange: the member's message and the bot's reply, two rows.

Per backend and round:

1. busy: ``--messages`` exchanges appended at once over ``--channels`` channels,
   then flushed (the write-behind batches them, as under load): wall time per message;
2. quiet: ``--quiet-messages`` exchanges one at a time, each flushed before the
   next (every message its own commit, as in a quiet server): wall time per message;
3. read: ``recent(channel, --depth)`` once per message, the read every reply does:
   wall time per read;
4. CPU per operation (each write of (1)-(2) and each read of (3)): this process,
   plus for PostgreSQL the server's processes (``/proc``: the postmaster and its
   backends), so both totals are the whole cost; the server's share on its own.

Three configurations: SQLite as the bot runs it (WAL, ``synchronous=FULL``: an
fsync per commit), SQLite with ``synchronous=OFF``, and the PostgreSQL test server,
which runs with ``fsync=off`` like the tests' (durability is not what it is for).
So "sqlite nosync" is the like-for-like baseline of PostgreSQL here; on a real
server with fsync on, PostgreSQL's commit costs a disk flush as SQLite's does.
Rounds alternate the order of the backends; the report gives each round and the
medians over rounds, with PostgreSQL's ratio to each SQLite figure.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hark.chat.history import Entry, HistoryStore
from hark.store.postgres import PostgresDatabase
from hark.store.sqlite import SQLiteDatabase
from hark.testing.postgres import PostgresCluster

GUILD = 1180000000000000111
CHANNEL = 1180000000000000333
KINDS = ("sqlite", "sqlite nosync", "postgresql")
MEASURES = [
    ("busy_us", "write, busy (batched), µs/message"),
    ("quiet_us", "write, quiet (own commit), µs/message"),
    ("read_us", "read recent(depth), µs/read"),
    ("cpu_us", "CPU, client + server, µs/operation"),
    ("server_us", "  of which the server's, µs/operation"),
]


def exchange(i: int) -> list[Entry]:
    return [
        Entry("user", f"message {i}: what do you think about the weather today?", "Ada", GUILD + 1),
        Entry("assistant", f"reply {i}: " + "It looks like rain later, take an umbrella. " * 3),
    ]


def server_cpu(cluster: PostgresCluster | None) -> float:
    """CPU seconds of the PostgreSQL server: the postmaster (with the backends it
    reaped) and its live children. 0 for SQLite (it runs in this process)."""
    if cluster is None:
        return 0.0
    try:
        postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        pid, ppid = int(entry.name), int(fields[1])
        if pid == postmaster or ppid == postmaster:
            # utime, stime, cutime, cstime (fields 14-17 of stat; 12-15 after the name)
            total += sum(int(v) for v in fields[11:15]) / tick
    return total


async def measure(db: Any, cluster: PostgresCluster | None, args: argparse.Namespace) -> dict:
    history = HistoryStore(db)
    channels = [CHANNEL + c for c in range(args.channels)]
    try:
        for i in range(50):  # warm up: statements prepared, pages cached
            await history.append(channels[i % len(channels)], GUILD, exchange(i))
        await history.flush()
        cpu0, server0 = time.process_time(), server_cpu(cluster)

        started = time.perf_counter()
        for i in range(args.messages):
            await history.append(channels[i % len(channels)], GUILD, exchange(i))
        await history.flush()
        busy = (time.perf_counter() - started) / args.messages

        started = time.perf_counter()
        for i in range(args.quiet_messages):
            await history.append(channels[i % len(channels)], GUILD, exchange(i))
            await history.flush()
        quiet = (time.perf_counter() - started) / args.quiet_messages

        started = time.perf_counter()
        for i in range(args.messages):
            entries = await history.recent(channels[i % len(channels)], args.depth)
            assert len(entries) == args.depth, len(entries)
        read = (time.perf_counter() - started) / args.messages

        server = server_cpu(cluster) - server0
        operations = 2 * args.messages + args.quiet_messages  # each write and each read
    finally:
        await history.close()
    return {
        "busy_us": busy * 1e6,
        "quiet_us": quiet * 1e6,
        "read_us": read * 1e6,
        "cpu_us": (time.process_time() - cpu0 + server) / operations * 1e6,
        "server_us": server / operations * 1e6,
    }


async def run_sqlite(tmp: Path, name: str, synchronous_off: bool) -> SQLiteDatabase:
    db = SQLiteDatabase(tmp / f"{name}.sqlite3")
    await db.open()
    if synchronous_off:
        await db.fetchall("PRAGMA synchronous=OFF")
    return db


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--quiet-messages", type=int, default=300)
    parser.add_argument("--channels", type=int, default=20)
    parser.add_argument("--depth", type=int, default=20)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    results: dict[str, list[dict]] = {kind: [] for kind in KINDS}
    with PostgresCluster() as cluster, tempfile.TemporaryDirectory() as tmp:
        print(f"PostgreSQL test server on 127.0.0.1:{cluster.port} (fsync off)")
        for round_no in range(1, args.rounds + 1):
            order = KINDS if round_no % 2 else tuple(reversed(KINDS))
            for kind in order:
                if kind == "postgresql":
                    db = PostgresDatabase(await cluster.create_database())
                    await db.open()
                    on = cluster
                else:
                    name = f"r{round_no}-{kind.replace(' ', '-')}"
                    db = await run_sqlite(Path(tmp), name, kind == "sqlite nosync")
                    on = None
                try:
                    figures = await measure(db, on, args)
                finally:
                    await db.close()
                results[kind].append(figures)
                shown = "  ".join(f"{key} {figures[key]:8.1f}" for key, _ in MEASURES)
                print(f"round {round_no}  {kind:<14} {shown}", flush=True)

    print(
        f"\nmedians of {args.rounds} rounds ({args.messages} busy + {args.quiet_messages}"
        f" quiet messages, {args.channels} channels, depth {args.depth}):"
    )
    header = "".join(f"{k:>15}" for k in KINDS)
    print(f"{'measure':<40}{header}{'pg/sqlite':>11}{'pg/nosync':>11}")
    for key, label in MEASURES:
        med = {kind: statistics.median(r[key] for r in results[kind]) for kind in KINDS}
        ratios = [
            f"{med['postgresql'] / med[base]:10.2f}x" if med[base] else f"{'-':>11}"
            for base in ("sqlite", "sqlite nosync")
        ]
        cells = "".join(f"{med[kind]:15.1f}" for kind in KINDS)
        print(f"{label:<40}{cells}{ratios[0]}{ratios[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
