"""Soak the text path with provider faults (bounded; prints figures, exits 1 on a failed check).

    python bench/soak_text.py [--messages 2000] [--members 20] [--channels 10] [--seed 1]

The real HarkBot runs in-process against the loopback Discord (``hark.testing``),
with the real ``llm_openrouter`` plugin (the official ``openai`` client) talking to
its loopback OpenAI-compatible fake. Members post messages interleaved over the
channels, a bounded number in flight, triggering the bot by callsign or mention.
Each chat request the fake receives draws a fault from a seeded RNG: HTTP 500
(5%), a hang (2%: no byte until the client gives up) or a stream cut after some
deltas (2%: the body ends, or the connection drops, without a finish).

Every reply the fake writes is unique to its message (it names the message's tag),
so each message's fate can be read off Discord and off the history table:

- delivered: the bot's reply to it ends as exactly the text the fake generated;
- failed: a notice ("Sorry, ...") and, when part of the reply was already shown,
  that part marked "[cut off]".

Checks (all must hold): every delivered exchange is in the history table exactly
once (user row, then the assistant row, in its channel); no failed turn and no
notice or cut-off text is in history (nor in any prompt the model received); every
failed turn is explained by an injected fault; the bot is still up at the end; no
log record at WARNING or above carries a traceback, and there is no ERROR at all;
RSS grows by less than 10 MiB from the end of the warm-up to the end. So that no
check passes vacuously, faults of every kind must have happened, turns must have
failed, and more than 75% of the messages (1,500 of 2,000) must be delivered.

History is kept whole for the check: the per-channel cap (``KEEP_PER_CHANNEL`` = 200
rows, i.e. 100 exchanges, against ~400 rows per channel here) is raised for the run,
so every exchange can be checked rather than a window; the cap's trimming has its
own tests.

Everything runs in one process, so RSS includes the loopback fakes. They keep every
message and request for test assertions; the soak drops what they hold about a turn
once that turn is checked (and keeps the gateway's resume buffer small), so what is
measured is the bot's memory, not the fakes' records.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import random
import re
import sqlite3
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hark_llm_openrouter
from aiohttp import web

# The loopback OpenAI server lives with the plugin's tests (no test code in wheels).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins/llm_openrouter/tests"))
from fake_openai_chat import CHAT_PATH, FakeOpenAIServer, RecordedRequest

import hark.chat.history as history_module
from hark.config import Config
from hark.testing.harness import BotHarness

TRIGGER = "robot"
PLACEHOLDER = "…"  # hark.chat.streaming.PLACEHOLDER: a reply still being written
CUT_MARK = " [cut off]"
NOTICE = "Sorry,"
MIB = 1024 * 1024
RSS_LIMIT = 10 * MIB
# How long one turn may take before it counts as stuck (a hang plus retries is ~5 s).
TURN_TIMEOUT = 30.0
# Per-attempt deadline of the generator (OPENROUTER_TIMEOUT), and the longest a user
# waits across retries (Config.provider_deadline, when the core has it).
ATTEMPT_TIMEOUT = 1.0
PROVIDER_DEADLINE = 2.0
# A hang holds the request this long at most (it normally ends when the client gives up).
HANG_FOR = 30.0

FAULT_KINDS = ("500", "hang", "cut")
WORDS = (
    "amber", "basalt", "cedar", "delta", "ember", "fjord", "garnet", "harbor", "iris",
    "juniper", "kelp", "lantern", "meadow", "nickel", "orchid", "pebble", "quartz",
    "ripple", "saffron", "tundra", "umber", "velvet", "willow", "xenon", "yarrow",
)  # fmt: skip
TAG = re.compile(r"#(m\d+)#")
ANSWER = re.compile(r"^Answer (m\d+):")


def tag_of(index: int) -> str:
    return f"m{index:05d}"


def expected_reply(tag: str) -> str:
    """The fake's answer to the message tagged ``tag`` (the same on every retry)."""
    rng = random.Random(tag)
    return f"Answer {tag}: " + " ".join(rng.choice(WORDS) for _ in range(10)) + "."


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def rss_bytes() -> int | None:
    """This process's resident set size (VmRSS), or None where /proc is missing."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.Process().memory_info().rss)


# -- the faulty model server ------------------------------------------------------


class FaultyOpenAI(FakeOpenAIServer):
    """The plugin's loopback fake, drawing a fault for every chat request.

    Attempts are logged per message tag: ``ok`` (the stream completed), ``500``,
    ``hang``, ``cut``, or ``dropped`` (the client went away mid-answer, e.g. its
    overall deadline ran out). Nothing else is kept (the base class records every
    request; that list is emptied at once).
    """

    def __init__(
        self,
        rng: random.Random,
        *,
        p500: float = 0.05,
        phang: float = 0.02,
        pcut: float = 0.02,
        hang_for: float = HANG_FOR,
        chunk_delay: float = 0.01,
    ) -> None:
        super().__init__(reply=self._answer, chunk_delay=chunk_delay, accept_any_model=True)
        self.rng = rng
        self.p500, self.phang, self.pcut = p500, phang, pcut
        self.hang_for = hang_for
        self.attempts: dict[str, list[str]] = {}
        self.injected: Counter[str] = Counter()
        self.cut_resets = 0  # cuts that dropped the connection (the rest end the body)
        self.hangs_released = 0  # hangs that ended because the client gave up
        self.untagged = 0  # chat requests whose last message had no tag
        self.context_tags: set[str] = set()  # tags seen in prompts' history part
        self.context_bad: list[str] = []  # history entries in a prompt that must not be there
        self._planned: dict[int, tuple[str, int]] = {}  # id(record) -> (fault, attempt index)

    def _draw(self) -> str:
        r = self.rng.random()
        if r < self.p500:
            return "500"
        if r < self.p500 + self.phang:
            return "hang"
        if r < self.p500 + self.phang + self.pcut:
            return "cut"
        return "ok"

    async def _record(self, request: web.Request) -> RecordedRequest | web.Response:
        try:
            record = await super()._record(request)
        except ConnectionError:
            # The client gave up before its request body arrived (an overloaded run):
            # nobody to answer, and not a fault of the bot's.
            self.requests.clear()
            return web.Response(status=499)
        self.requests.clear()
        if not isinstance(record, RecordedRequest) or record.path != CHAT_PATH:
            return record
        tag = self._tag(record)
        fault = self._draw()
        attempts = self.attempts.setdefault(tag, [])
        attempts.append(fault)
        if fault != "ok":
            self.injected[fault] += 1
        if fault == "hang":
            await self._hang(request)
            return self._error(504, "the fake hung (the client should have given up)")
        self._planned[id(record)] = (fault, len(attempts) - 1)
        return record

    def _check(self, record: RecordedRequest, endpoint: str) -> web.Response | None:
        planned = self._planned.get(id(record))
        if planned is not None and planned[0] == "500":
            del self._planned[id(record)]
            return self._error(500, "Injected failure (HTTP 500).")
        return super()._check(record, endpoint)

    async def _hang(self, request: web.Request) -> None:
        """Send nothing until the client closes the connection (or ``hang_for``)."""
        until = time.monotonic() + self.hang_for
        while time.monotonic() < until:
            transport = request.transport
            if transport is None or transport.is_closing():
                self.hangs_released += 1
                return
            await asyncio.sleep(0.05)

    async def _stream(
        self, request: web.Request, record: RecordedRequest, pieces: list[str], finish: str
    ) -> web.StreamResponse:
        fault, attempt = self._planned.pop(id(record), ("ok", -1))
        tag = self._tag(record)
        if fault == "cut":
            # The base class takes its queued fault first thing in _stream, with no
            # await before: this cut is the one the next call takes.
            assert not self._faults, "stream faults are only queued here"
            reset = self.rng.random() < 0.5
            self.cut_resets += reset
            self.cut_next(after=self.rng.randint(1, len(pieces) - 1), reset=reset)
        try:
            response = await super()._stream(request, record, pieces, finish)
        except ConnectionError:
            # The client went away mid-answer (it gave up); nothing to send it.
            self._mark(tag, attempt, "dropped")
            return web.StreamResponse()
        return response

    def _mark(self, tag: str, attempt: int, status: str) -> None:
        attempts = self.attempts.get(tag)
        if attempts is not None and 0 <= attempt < len(attempts):
            attempts[attempt] = status

    @staticmethod
    def _tag(record: RecordedRequest) -> str:
        messages = record.messages
        found = TAG.findall(str(messages[-1].get("content", ""))) if messages else []
        return found[-1] if found else "?"

    def _answer(self, record: RecordedRequest) -> str:
        messages = record.messages
        for message in messages[:-1]:
            role, content = message.get("role"), str(message.get("content", ""))
            if role == "user":
                self.context_tags.update(TAG.findall(content))
            elif role == "assistant":
                match = ANSWER.match(content)
                if match is None or content != expected_reply(match.group(1)):
                    if len(self.context_bad) < 20:
                        self.context_bad.append(content[:120])
                    continue
                self.context_tags.add(match.group(1))
            bad = CUT_MARK.strip() in content or NOTICE in content
            if role != "system" and bad and len(self.context_bad) < 20:
                self.context_bad.append(content[:120])
        tag = self._tag(record)
        if tag == "?":
            self.untagged += 1
            return "A message without a tag."
        return expected_reply(tag)


# -- logs -----------------------------------------------------------------------


class LogAudit(logging.Handler):
    """Sees every record (root at DEBUG); keeps counts, and the first example of each
    distinct offending record (an ERROR, or a traceback at WARNING+)."""

    def __init__(self, keep: int = 8) -> None:
        super().__init__(logging.DEBUG)
        self.keep = keep
        self.total = 0
        self.by_level: Counter[str] = Counter()
        self.warnings: Counter[tuple[str, str, str]] = Counter()  # (logger, level, template)
        self.errors = 0
        self.tracebacks = 0
        # (logger, level, template, exception type) -> [count, first formatted record]
        self.offenders: dict[tuple[str, str, str, str], list[Any]] = {}
        self._format = logging.Formatter("%(levelname)s %(name)s: %(message)s")

    def emit(self, record: logging.LogRecord) -> None:
        self.total += 1
        self.by_level[record.levelname] += 1
        if record.levelno < logging.WARNING:
            return  # tracebacks at DEBUG/INFO are allowed
        template = str(record.msg)[:100]
        self.warnings[(record.name, record.levelname, template)] += 1
        try:
            message = record.getMessage()
        except Exception:
            message = template
        traced = bool(
            record.exc_info
            or record.exc_text
            or record.stack_info
            or "Traceback (most recent call last)" in message
        )
        self.tracebacks += traced
        self.errors += record.levelno >= logging.ERROR
        if not traced and record.levelno < logging.ERROR:
            return
        exc = record.exc_info[1] if isinstance(record.exc_info, tuple) else None
        key = (record.name, record.levelname, template, type(exc).__name__ if exc else "")
        if key in self.offenders:
            self.offenders[key][0] += 1
        elif len(self.offenders) < self.keep:
            try:
                text = self._format.format(record)
            except Exception:
                text = f"{record.levelname} {record.name}: {message}"
            self.offenders[key] = [1, text]

    def _other(self, kind: str, exc: BaseException | None, text: str) -> None:
        self.errors += 1
        self.tracebacks += 1
        key = (kind, "ERROR", "", type(exc).__name__ if exc else "")
        if key in self.offenders:
            self.offenders[key][0] += 1
        elif len(self.offenders) < self.keep:
            self.offenders[key] = [1, text]

    def unraisable(self, unraisable: Any) -> None:
        exc = unraisable.exc_value
        text = "".join(traceback.format_exception(type(exc), exc, unraisable.exc_traceback))
        self._other("unraisable", exc, f"UNRAISABLE {unraisable.err_msg}: {text}")

    def thread_exception(self, args: Any) -> None:
        text = "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_tb))
        self._other("thread", args.exc_value, f"THREAD {args.thread}: {text}")

    def describe(self) -> list[str]:
        """Each distinct offender: how often, then its first occurrence in full."""
        lines = []
        for (name, level, template, exc), (count, text) in self.offenders.items():
            lines.append(f"log: {count}x {level} {name} {template!r} {exc}".rstrip())
            lines.extend(f"    {line}" for line in text.splitlines())
        return lines


@contextlib.contextmanager
def audited_logs() -> Iterator[LogAudit]:
    """Route every log record (root at DEBUG) to a :class:`LogAudit` only, for the run.

    Other root handlers are detached meanwhile: a capturing handler (pytest's) would
    keep every DEBUG record and inflate the RSS being measured.
    """
    audit = LogAudit()
    root = logging.getLogger()
    saved = root.handlers[:], root.level, sys.unraisablehook, threading.excepthook
    root.handlers = [audit]
    root.setLevel(logging.DEBUG)
    sys.unraisablehook = audit.unraisable
    threading.excepthook = audit.thread_exception
    try:
        yield audit
    finally:
        root.handlers, level, sys.unraisablehook, threading.excepthook = (
            saved[0],
            saved[1],
            saved[2],
            saved[3],
        )
        root.setLevel(level)


@contextlib.contextmanager
def patched_environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def history_cap(rows: int) -> Iterator[None]:
    saved = history_module.KEEP_PER_CHANNEL
    history_module.KEEP_PER_CHANNEL = rows
    try:
        yield
    finally:
        history_module.KEEP_PER_CHANNEL = saved


# -- the run ----------------------------------------------------------------------


@dataclass(slots=True)
class Planned:
    index: int
    member: int
    channel: int
    mention: bool
    content: str
    outcome: str = ""  # delivered | notice | cut_off | stuck | garbled
    latency: float = 0.0
    shown: str = ""  # the final content, for garbled replies only


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class SoakResult:
    figures: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[str]:
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.ok]

    def check(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append(Check(name, bool(ok), detail))

    def report(self) -> str:
        lines = [*self.figures, ""]
        lines += [f"{'PASS' if c.ok else 'FAIL'}  {c.name}: {c.detail}" for c in self.checks]
        if self.evidence:
            lines += ["", "evidence:", *self.evidence]
        lines.append("")
        lines.append("soak: PASS" if self.ok else f"soak: FAIL ({len(self.failures)} checks)")
        return "\n".join(lines)


class Soak:
    def __init__(
        self,
        *,
        messages: int,
        members: int,
        channels: int,
        seed: int,
        in_flight: int,
        warmup: int,
        data_dir: Path,
        trace_memory: bool = False,
    ) -> None:
        self.n, self.n_members, self.n_channels = messages, members, channels
        self.seed, self.in_flight = seed, in_flight
        self.warmup = min(warmup, messages)
        self.data_dir = data_dir
        self.trace_memory = trace_memory
        self.rng = random.Random(seed)
        self.model = FaultyOpenAI(random.Random(f"faults-{seed}"))
        self.result = SoakResult()
        self.plans: list[Planned] = []
        self.claimed: set[int] = set()  # notices already matched to a cut-off reply
        self.done = 0
        self.deadline_supported = "provider_deadline" in getattr(Config, "__dataclass_fields__", {})

    # -- set-up ---------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "trigger_names": [TRIGGER],
            "rate_limit": "0",
            "edit_interval": 0.1,
        }
        if self.deadline_supported:
            config["provider_deadline"] = PROVIDER_DEADLINE
        return config

    def plan(self, bot_id: int) -> None:
        for i in range(self.n):
            member = self.rng.randrange(self.n_members)
            channel = self.rng.randrange(self.n_channels)
            mention = self.rng.random() < 0.2
            lead = f"<@{bot_id}>" if mention else f"{TRIGGER},"
            filler = " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randint(3, 8)))
            content = f"{lead} question {i} from member{member:02d}: {filler}? #{tag_of(i)}#"
            self.plans.append(Planned(i, member, channel, mention, content))

    async def populate(self, h: BotHarness) -> None:
        server = h.server
        self.channels = [
            server.create_text_channel(h.guild, f"soak-{c}") for c in range(self.n_channels)
        ]
        self.members = [
            server.create_member(h.guild, f"member{m:02d}") for m in range(self.n_members)
        ]
        async with asyncio.timeout(10):
            while True:
                guild = h.bot.get_guild(h.guild.id)
                if (
                    guild is not None
                    and all(h.bot.get_channel(c.id) for c in self.channels)
                    and all(guild.get_member(m.id) for m in self.members)
                ):
                    break
                await asyncio.sleep(0.02)

    # -- one turn -------------------------------------------------------------

    async def turn(self, h: BotHarness, plan: Planned) -> None:
        server = h.server
        channel, member = self.channels[plan.channel], self.members[plan.member]
        started = time.perf_counter()
        posted = await server.post_message(channel, member, plan.content)
        reply = notice = None
        try:
            reply = await server.wait_for_message(
                channel,
                author=server.bot_user,
                after=posted,
                check=lambda m: m.reference_id == posted.id,
                timeout=TURN_TIMEOUT,
            )
            if reply.content.endswith(PLACEHOLDER):
                await server.wait_for_edit(
                    reply,
                    check=lambda m: not m.content.endswith(PLACEHOLDER),
                    timeout=TURN_TIMEOUT,
                )
            content = reply.content
            plan.latency = time.perf_counter() - started
            if content == expected_reply(tag_of(plan.index)):
                plan.outcome = "delivered"
            elif content.startswith(NOTICE):
                plan.outcome = "notice"
            elif content.endswith(CUT_MARK):
                plan.outcome = "cut_off"
                # The notice follows the cut-off reply, unreferenced; any one not yet
                # matched to another cut-off reply in this channel.
                notice = await server.wait_for_message(
                    channel,
                    author=server.bot_user,
                    after=reply,
                    check=lambda m: (
                        m.reference_id is None
                        and m.content.startswith(NOTICE)
                        and m.id not in self.claimed
                    ),
                    timeout=TURN_TIMEOUT,
                )
                self.claimed.add(notice.id)
            else:
                plan.outcome, plan.shown = "garbled", content[:160]
        except TimeoutError:
            plan.latency = time.perf_counter() - started
            if not plan.outcome or plan.outcome == "delivered":
                plan.outcome = "stuck"
            else:
                plan.outcome += "_no_notice"
        except Exception as exc:  # the soak's own trouble: counted, shown, not hidden
            plan.outcome, plan.shown = "harness_error", repr(exc)[:160]
        finally:
            self.forget(server, posted, reply, notice)
            self.done += 1
            if self.done % 50 == 0:
                self.trim_fakes(server)

    @staticmethod
    def forget(server: Any, *records: Any) -> None:
        """Drop a finished turn's messages from the loopback Discord's records."""
        for record in records:
            if record is None:
                continue
            server.state.messages.pop(record.id, None)
            kept = server.state.channel_messages.get(record.channel_id)
            if kept is not None:
                with contextlib.suppress(ValueError):
                    kept.remove(record)

    @staticmethod
    def trim_fakes(server: Any) -> None:
        """Empty the loopback Discord's logs of requests, typing and gateway events."""
        for log in (
            getattr(server, "requests", None),
            getattr(server, "typing_events", None),
            getattr(getattr(server, "gateway", None), "events", None),
        ):
            if isinstance(log, list):
                log.clear()

    async def phase(self, h: BotHarness, start: int, stop: int) -> None:
        pending = iter(self.plans[start:stop])

        async def worker() -> None:
            for plan in pending:
                await self.turn(h, plan)

        await asyncio.gather(*(worker() for _ in range(self.in_flight)))
        flush = getattr(h.bot.runtime.history, "flush", None)
        if flush is not None:
            await flush()

    def sample(self, h: BotHarness) -> int | None:
        self.trim_fakes(h.server)
        gc.collect()
        return rss_bytes()

    # -- the whole soak -------------------------------------------------------

    async def run(self, timeout: float) -> SoakResult:
        with (
            audited_logs() as audit,
            history_cap(max(history_module.KEEP_PER_CHANNEL, 4 * self.n + 10)),
        ):
            async with self.model:
                # Read by the plugin when the bot loads it.
                environ = {
                    "OPENROUTER_BASE_URL": self.model.base_url,
                    "OPENROUTER_API_KEY": "sk-soak-0123456789",
                    "OPENROUTER_MODEL": "openai/gpt-4o-mini",
                    "OPENROUTER_TIMEOUT": str(ATTEMPT_TIMEOUT),
                }
                with patched_environ(environ):
                    await self._run(audit, timeout)
        return self.result

    async def _run(self, audit: LogAudit, timeout: float) -> None:
        result = self.result
        h = BotHarness(
            self.data_dir, plugins={"llm_openrouter": hark_llm_openrouter}, config=self.config()
        )
        # The soak does not resume sessions; a small resume buffer keeps the fake's
        # memory out of the RSS figures.
        h.server.gateway.buffer_size = 256
        live_rows: list[tuple[Any, ...]] | None = None
        elapsed = 0.0
        timed_out = False
        bot_up = False
        rss_warm = rss_end = None
        tracing = None
        started = time.perf_counter()
        await h.start()
        try:
            generator = h.providers("llm_openrouter")[0]
            result.figures.append(
                f"setup             : llm_openrouter {generator.public_base_url}, attempt timeout"
                f" {generator.timeout:g} s, "
                + (
                    f"provider deadline {PROVIDER_DEADLINE:g} s (Config.provider_deadline)"
                    if self.deadline_supported
                    else "Config.provider_deadline MISSING: only the per-attempt timeout applies"
                )
            )
            result.check(
                "loopback only",
                generator.base_url.startswith("http://127.0.0.1:")
                and h.server.api_base.startswith("http://127.0.0.1:"),
                f"model at {generator.base_url}, Discord at {h.server.api_base}",
            )
            self.bot_id, self.bot_name = h.server.bot_user.id, h.server.bot_user.username
            await self.populate(h)
            self.plan(h.server.bot_user.id)
            try:
                async with asyncio.timeout(timeout):
                    started = time.perf_counter()
                    await self.phase(h, 0, self.warmup)
                    rss_warm = self.sample(h)
                    if self.trace_memory:
                        import tracemalloc

                        tracemalloc.start(1)
                        tracing = tracemalloc.take_snapshot()
                    await self.phase(h, self.warmup, self.n)
                    elapsed = time.perf_counter() - started
                    rss_end = self.sample(h)
                    if tracing is not None:
                        import tracemalloc

                        top = tracemalloc.take_snapshot().compare_to(tracing, "lineno")[:12]
                        tracemalloc.stop()
                        result.evidence += [f"memory: {stat}" for stat in top]
            except TimeoutError:
                timed_out = True
                elapsed = time.perf_counter() - started
            task = h._task
            bot_up = task is not None and not task.done() and not h.bot.is_closed()
            if not timed_out:
                live_rows = await h.bot.runtime.db.fetchall(
                    "SELECT id, channel_id, role, author_id, content FROM history ORDER BY id"
                )
            identify, resume = h.server.identify_count, h.server.resume_count
            fake_errors = list(h.server.internal_errors)
        finally:
            await h.close()
        stored_rows = await asyncio.to_thread(read_history, self.data_dir / "hark.sqlite3")
        self.figures_and_checks(
            audit=audit,
            elapsed=elapsed,
            timeout=timeout,
            timed_out=timed_out,
            bot_up=bot_up,
            rss_warm=rss_warm,
            rss_end=rss_end,
            live_rows=live_rows,
            stored_rows=stored_rows,
            identify=identify,
            resume=resume,
            fake_errors=fake_errors,
        )

    # -- verdict --------------------------------------------------------------

    def figures_and_checks(
        self,
        *,
        audit: LogAudit,
        elapsed: float,
        timeout: float,
        timed_out: bool,
        bot_up: bool,
        rss_warm: int | None,
        rss_end: int | None,
        live_rows: list[tuple[Any, ...]] | None,
        stored_rows: list[tuple[Any, ...]],
        identify: int,
        resume: int,
        fake_errors: list[str],
    ) -> None:
        result, model = self.result, self.model
        fig = result.figures
        plans = [p for p in self.plans if p.outcome]
        outcomes = Counter(p.outcome for p in plans)
        delivered = [p for p in plans if p.outcome == "delivered"]
        failed = [p for p in plans if p.outcome != "delivered"]
        fig.insert(
            0,
            f"soak              : {self.n} messages from {self.n_members} members in"
            f" {self.n_channels} channels, {self.in_flight} in flight, seed {self.seed},"
            f" warm-up {self.warmup}",
        )
        rate = len(plans) / elapsed if elapsed > 0 else float("nan")
        fig.append(
            f"duration          : {elapsed:.1f} s for {len(plans)} messages ({rate:.1f} messages/s)"
        )

        # Per message: what the model server saw, and what became of it.
        retried_ok: Counter[str] = Counter()
        failed_by: Counter[str] = Counter()
        unexplained: list[str] = []
        inconsistent: list[str] = []
        for p in plans:
            tag = tag_of(p.index)
            attempts = model.attempts.get(tag, [])
            faults = {a for a in attempts if a in FAULT_KINDS}
            if p.outcome == "delivered":
                if attempts and attempts[-1] != "ok":
                    inconsistent.append(f"{tag} delivered, attempts {attempts}")
                for kind in faults:
                    retried_ok[kind] += 1
                continue
            last = attempts[-1] if attempts else "none"
            if last in FAULT_KINDS:
                failed_by[last] += 1
            elif last == "dropped" and faults:
                failed_by["deadline"] += 1
            else:
                unexplained.append(f"{tag} {p.outcome}, attempts {attempts} {p.shown!r}"[:200])
        requests = sum(len(a) for a in model.attempts.values())
        fig.append(
            f"provider requests : {requests} for {len(model.attempts)} messages; injected "
            + ", ".join(f"{k} x{model.injected[k]}" for k in FAULT_KINDS)
            + f" (cuts dropping the connection {model.cut_resets}, hangs ended by the client"
            f" {model.hangs_released})"
        )
        retried = sum(1 for p in delivered if len(model.attempts.get(tag_of(p.index), [])) > 1)
        fig.append(
            f"delivered         : {len(delivered)} ({retried} after a retry: "
            + ", ".join(f"past {k} {retried_ok[k]}" for k in FAULT_KINDS)
            + ")"
        )
        fig.append(
            "by fault          : "
            + "; ".join(
                f"{k}: {model.injected[k]} requests, {retried_ok[k]} turns retried then ok,"
                f" {failed_by[k]} ended in a notice"
                for k in FAULT_KINDS
            )
            + f"; deadline spent on faults: {failed_by['deadline']} notices"
        )
        shapes = sorted((o, n) for o, n in outcomes.items() if o != "delivered")
        fig.append(
            f"failed            : {len(failed)} ("
            + ", ".join(f"{o} {n}" for o, n in shapes)
            + "); by last fault: "
            + ", ".join(f"{k} {failed_by[k]}" for k in (*FAULT_KINDS, "deadline"))
            + f", unexplained {len(unexplained)}"
        )
        lat = [p.latency for p in delivered]
        lat_failed = [p.latency for p in failed]
        fig.append(
            f"reply latency     : delivered p50 {percentile(lat, 50) * 1000:.0f} ms,"
            f" p95 {percentile(lat, 95) * 1000:.0f} ms, max {max(lat, default=0) * 1000:.0f} ms;"
            f" failed p50 {percentile(lat_failed, 50) * 1000:.0f} ms,"
            f" p95 {percentile(lat_failed, 95) * 1000:.0f} ms"
        )
        if rss_warm is not None and rss_end is not None:
            fig.append(
                f"RSS               : {rss_warm / MIB:.1f} MiB after warm-up, {rss_end / MIB:.1f}"
                f" MiB at the end ({(rss_end - rss_warm) / MIB:+.2f} MiB; limit"
                f" {RSS_LIMIT / MIB:.0f} MiB)"
            )
        top_warnings = ", ".join(
            f"{n}x {name} {text!r}" for (name, _lvl, text), n in audit.warnings.most_common(6)
        )
        fig.append(
            f"log               : {audit.total} records ("
            + ", ".join(f"{k} {v}" for k, v in sorted(audit.by_level.items()))
            + f"); with a traceback at WARNING+ {audit.tracebacks}; top WARNING+: {top_warnings}"
        )
        fig.append(f"gateway           : identify {identify}, resume {resume}")

        # -- checks ---------------------------------------------------------
        result.check(
            "bounded",
            not timed_out and len(plans) == self.n,
            f"{len(plans)}/{self.n} messages done in {elapsed:.1f} s (limit {timeout:g} s)",
        )
        result.check("bot stays up", bot_up, "bot task running at the end" if bot_up else "down")
        need = int(0.75 * self.n)
        result.check(
            "enough delivered",
            len(delivered) > need,
            f"{len(delivered)} delivered (need more than {need})",
        )
        happened = {k: model.injected[k] for k in FAULT_KINDS}
        result.check(
            "faults of every kind happened",
            all(happened.values()) and retried_ok["500"] > 0 and failed_by["cut"] > 0,
            f"injected {happened}; turns delivered past a 500 {retried_ok['500']},"
            f" failed on a cut {failed_by['cut']}",
        )
        result.check(
            "every failed turn is explained by a fault",
            not unexplained and not inconsistent and outcomes["stuck"] == 0,
            f"{len(unexplained)} unexplained, {len(inconsistent)} inconsistent,"
            f" {outcomes['stuck']} stuck, {outcomes['garbled']} garbled",
        )
        result.evidence += [f"unexplained: {u}" for u in unexplained[:10]]
        result.evidence += [f"inconsistent: {u}" for u in inconsistent[:10]]
        cut_without_notice = outcomes["cut_off_no_notice"]
        result.check(
            "one notice per failed turn",
            cut_without_notice == 0,
            f"{outcomes['notice']} notices in place of a reply, {outcomes['cut_off']} cut-off"
            f" replies followed by a notice, {cut_without_notice} without",
        )
        if live_rows is not None:
            self.check_history(live_rows, delivered, failed)
            same = [tuple(r) for r in live_rows] == [tuple(r) for r in stored_rows]
            result.check(
                "history durable after shutdown",
                same,
                f"{len(live_rows)} rows while running, {len(stored_rows)} in the file after stop",
            )
        context_failed = sorted(model.context_tags & {tag_of(p.index) for p in failed})
        result.check(
            "no failed turn in any prompt",
            not context_failed and not model.context_bad and model.untagged == 0,
            f"{len(context_failed)} failed turns seen in prompts {context_failed[:5]},"
            f" {len(model.context_bad)} bad history entries {model.context_bad[:3]},"
            f" {model.untagged} untagged requests",
        )
        result.check(
            "no traceback logged at WARNING+",
            audit.tracebacks == 0,
            f"{audit.tracebacks} records with a traceback",
        )
        result.check("no ERROR logged", audit.errors == 0, f"{audit.errors} ERROR records")
        result.evidence += audit.describe()
        if rss_warm is None or rss_end is None:
            why = "the run did not finish" if timed_out else "no /proc, no psutil"
            result.check("memory flat", False, f"RSS not measured ({why})")
        else:
            growth = rss_end - rss_warm
            result.check(
                "memory flat",
                growth < RSS_LIMIT,
                f"RSS {growth / MIB:+.2f} MiB after warm-up (limit {RSS_LIMIT / MIB:.0f} MiB)",
            )
        result.check(
            "loopback fakes healthy", not fake_errors, f"{len(fake_errors)} internal errors"
        )
        result.evidence += [f"fake discord: {e}" for e in fake_errors[:5]]

    def check_history(
        self, rows: list[tuple[Any, ...]], delivered: list[Planned], failed: list[Planned]
    ) -> None:
        result = self.result
        by_channel: dict[int, list[tuple[Any, ...]]] = {}
        for row in rows:
            by_channel.setdefault(row[1], []).append(row)
        user_rows: dict[str, list[tuple[int, int, int]]] = {}  # tag -> (channel, pos, author)
        answer_rows: dict[str, list[tuple[int, int, str]]] = {}  # tag -> (channel, pos, text)
        bad_text: list[str] = []
        orphans: list[str] = []
        for channel_id, channel_rows in by_channel.items():
            for pos, (_id, _ch, role, author_id, content) in enumerate(channel_rows):
                if NOTICE in content or CUT_MARK.strip() in content:
                    bad_text.append(content[:100])
                if role == "user":
                    tags = TAG.findall(content)
                    if len(tags) != 1:
                        orphans.append(content[:100])
                        continue
                    user_rows.setdefault(tags[0], []).append((channel_id, pos, author_id))
                else:
                    match = ANSWER.match(content)
                    if match is None:
                        orphans.append(content[:100])
                        continue
                    answer_rows.setdefault(match.group(1), []).append((channel_id, pos, content))
        missing, partial, duplicated, misplaced, wrong_text, split = [], [], [], [], [], []
        for p in delivered:
            tag = tag_of(p.index)
            users, answers = user_rows.get(tag, []), answer_rows.get(tag, [])
            if not users and not answers:
                missing.append(tag)
                continue
            if len(users) > 1 or len(answers) > 1:
                duplicated.append(f"{tag}: {len(users)} user, {len(answers)} assistant rows")
                continue
            if len(users) != len(answers):  # half an exchange: not stored whole
                partial.append(f"{tag}: {len(users)} user, {len(answers)} assistant rows")
                continue
            (u_channel, u_pos, author), (a_channel, a_pos, text) = users[0], answers[0]
            channel_id = self.channels[p.channel].id
            if u_channel != channel_id or a_channel != channel_id:
                misplaced.append(tag)
            if author != self.members[p.member].id or text != expected_reply(tag):
                wrong_text.append(tag)
            if a_pos != u_pos + 1:
                split.append(tag)
        for p in delivered:  # the user text as the bot saw it (a mention becomes its name)
            tag = tag_of(p.index)
            expect = p.content.replace(f"<@{self.bot_id}>", self.bot_name).strip()
            if tag in user_rows and len(user_rows[tag]) == 1:
                channel_id, pos, _ = user_rows[tag][0]
                if by_channel[channel_id][pos][4] != expect:
                    wrong_text.append(f"{tag} (user text)")
        in_history = [
            tag_of(p.index)
            for p in failed
            if tag_of(p.index) in user_rows or tag_of(p.index) in answer_rows
        ]
        expected_rows = 2 * len(delivered)
        whole = len(delivered) - len(missing) - len(partial) - len(duplicated)
        result.figures.append(
            f"history           : {len(rows)} rows checked ({expected_rows} expected:"
            f" {len(delivered)} exchanges); missing {len(missing)}, half-stored {len(partial)},"
            f" duplicated {len(duplicated)}, failed turns present {len(in_history)}"
        )
        result.check(
            "every delivered reply in history exactly once",
            not (missing or partial or duplicated or misplaced or wrong_text or split)
            and len(rows) == expected_rows,
            f"{whole}/{len(delivered)} exchanges stored once; missing {len(missing)}"
            f" {missing[:5]}, half-stored {len(partial)} {partial[:3]}, duplicated"
            f" {len(duplicated)} {duplicated[:3]}, wrong channel {len(misplaced)}, wrong text"
            f" {len(wrong_text)} {wrong_text[:3]}, user/assistant rows apart {len(split)}"
            f" {split[:3]}; {len(rows)} rows for {expected_rows} expected",
        )
        result.check(
            "no failed turn in history",
            not in_history and not bad_text and not orphans,
            f"{len(failed)} failed turns, {len(in_history)} in history {in_history[:5]};"
            f" notice/cut-off rows {len(bad_text)} {bad_text[:2]}; unknown rows {len(orphans)}"
            f" {orphans[:2]}",
        )


def read_history(path: Path) -> list[tuple[Any, ...]]:
    """The history table as stored on disk (after the bot stopped)."""
    if not path.exists():
        return []
    conn = sqlite3.connect(path)
    try:
        return list(
            conn.execute("SELECT id, channel_id, role, author_id, content FROM history ORDER BY id")
        )
    finally:
        conn.close()


async def run_soak(
    *,
    messages: int = 2000,
    members: int = 20,
    channels: int = 10,
    seed: int = 1,
    in_flight: int = 32,
    warmup: int = 200,
    timeout: float = 240.0,
    data_dir: str | Path | None = None,
    trace_memory: bool = False,
) -> SoakResult:
    """Run the soak; the result's ``ok`` says whether every check held."""
    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="hark-soak-"))
        soak = Soak(
            messages=messages,
            members=members,
            channels=channels,
            seed=seed,
            in_flight=in_flight,
            warmup=warmup,
            data_dir=Path(data_dir),
            trace_memory=trace_memory,
        )
        return await soak.run(timeout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--channels", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=240.0)
    parser.add_argument(
        "--trace-memory",
        action="store_true",
        help="print where memory grew after the warm-up (tracemalloc: several times"
        " slower, so use fewer in flight, e.g. --in-flight 4)",
    )
    args = parser.parse_args()
    result = asyncio.run(
        run_soak(
            messages=args.messages,
            members=args.members,
            channels=args.channels,
            seed=args.seed,
            in_flight=args.in_flight,
            warmup=args.warmup,
            timeout=args.timeout,
            trace_memory=args.trace_memory,
        )
    )
    print(result.report())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
