"""Benchmark memory recall (prints figures; not a test).

    python bench/bench_memory.py [--facts 10000] [--baseline 100] [--queries 200]

In one run, on a fresh SQLite database in a temporary folder (no network, no model):
a server with ``--baseline`` facts and one with ``--facts`` facts (a few hundred of
them about the speaker, the rest about 200 other members), then ``--queries``
recalls in each (FTS5 search + the speaker's profile + the budget), with the
default token budget. Prints recall time (p50/p95) and the memory part's size in
the prompt for both, and their ratio: the budget should hold the prompt flat, and
recall should grow far slower than the number of facts.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

import hark_memory
from hark_memory import Memory, MemorySettings, MemoryStore, NewFact, estimate_tokens

import hark
from hark.store import SQLiteDatabase
from hark.store.plugin_db import BotPluginDatabase, apply_plugin_migrations

TOPICS = [
    "cat",
    "dog",
    "garden",
    "cello",
    "piano",
    "jazz",
    "hiking",
    "cooking",
    "chess",
    "football",
    "tea",
    "coffee",
    "Lyon",
    "Oslo",
    "painting",
    "climbing",
    "cycling",
    "poetry",
    "baking",
    "gaming",
    "anime",
    "films",
    "nurse",
    "teacher",
    "coder",
]
SPEAKER = 1


class Host:
    """What Memory needs of a bot, without one: settings, the database, a logger."""

    def __init__(self, db: BotPluginDatabase) -> None:
        self.db = db

    def settings(self, plugin_id: str, **_: object) -> types.SimpleNamespace:
        return types.SimpleNamespace(values=MemorySettings())

    def database(self, plugin_id: str) -> BotPluginDatabase:
        return self.db

    def logger(self, plugin_id: str) -> logging.Logger:
        return logging.getLogger("bench")


def facts_for(count: int, rng: random.Random) -> list[NewFact]:
    out = []
    for n in range(count):
        subject = SPEAKER if n % 40 == 0 else 2 + n % 200
        words = rng.sample(TOPICS, 3)
        text = f"likes {words[0]} and {words[1]}, fact {n}, talks about {words[2]}"
        out.append(
            NewFact(text, subject, f"m{subject}", 1 + n % 5, subject, f"m{subject}", 1, 1, n)
        )
    return out


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(memory: Memory, guild: int, queries: int, rng: random.Random) -> dict:
    times, sizes = [], []
    for _ in range(queries):
        words = rng.sample(TOPICS, 2)
        request = hark.ContextRequest(
            f"what do you know about {words[0]} or {words[1]}?",
            guild_id=guild,
            user_id=SPEAKER,
            user_name="speaker",
        )
        started = time.perf_counter()
        text = await memory.recall(request) or ""
        times.append((time.perf_counter() - started) * 1000)
        sizes.append(estimate_tokens(text) if text else 0)
    return {
        "p50": statistics.median(times),
        "p95": pct(times, 0.95),
        "tokens": statistics.mean(sizes),
    }


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--facts", type=int, default=10_000)
    parser.add_argument("--baseline", type=int, default=100)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args(argv)
    rng = random.Random(14)
    with tempfile.TemporaryDirectory() as tmp:
        db = SQLiteDatabase(Path(tmp) / "hark.sqlite3")
        await db.open()
        try:
            await apply_plugin_migrations(db, "memory", hark_memory.MIGRATIONS)
            plugin_db = BotPluginDatabase(db, "memory")
            store = MemoryStore(plugin_db)
            # Filled with plain inserts: save()'s near-duplicate check is not what is measured.
            for guild, count in ((1, args.baseline), (2, args.facts)):
                started = time.perf_counter()
                rows = [
                    (
                        f"guild:{guild}",
                        f.subject_id,
                        f.subject_name,
                        f.text,
                        f.importance,
                        f.said_by,
                        f.said_by_name,
                        guild,
                        1,
                        "bench",
                        f.at,
                        f.at,
                    )
                    for f in facts_for(count, rng)
                ]
                await plugin_db.executemany(
                    "INSERT INTO memory_facts (space, subject_id, subject_name, text,"
                    " importance, said_by, said_by_name, guild_id, channel_id, origin,"
                    " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                print(
                    f"stored {await store.count(f'guild:{guild}'):>6} facts in server {guild}"
                    f" in {time.perf_counter() - started:.2f}s"
                )
            memory = Memory(Host(plugin_db), "memory")
            await measure(memory, 2, 10, rng)  # warm the page cache
            base = await measure(memory, 1, args.queries, rng)
            big = await measure(memory, 2, args.queries, rng)
        finally:
            await db.close()
    budget = MemorySettings().recall_tokens
    print(f"\nrecall, {args.queries} queries each, budget {budget} tokens")
    print(f"{'facts':>8} {'p50 ms':>8} {'p95 ms':>8} {'prompt tokens':>14}")
    for count, r in ((args.baseline, base), (args.facts, big)):
        print(f"{count:>8} {r['p50']:>8.2f} {r['p95']:>8.2f} {r['tokens']:>14.0f}")
    ratio = big["p50"] / base["p50"] if base["p50"] else float("inf")
    growth = big["tokens"] / base["tokens"] if base["tokens"] else float("inf")
    print(
        f"\n{args.facts // max(1, args.baseline)}x the facts: recall p50 x{ratio:.1f},"
        f" prompt part x{growth:.2f} (capped by the budget)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
