"""End-to-end: what the bot tells people and its log (real discord.py, loopback Discord).

`!ping` reports only figures it measured; a refused slash-command sync logs one
line per scope and the refused set is not sent again until it changes; the
"no LLM" notice gives the exact command with the configured prefix; `!persona`
replies to the message that asked.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time

import hark_example_hello as hello

from hark.chat.pipeline import NoGenerator
from hark.cogs.chat import sane_gateway_latency
from hark.testing.discord import eventually
from hark.testing.fakes import EchoGenerator, fake_plugin
from hark.testing.harness import BotHarness

CHAT = {"trigger_names": ["robot"], "edit_interval": 0.05, "rate_limit": "0"}

# -- !ping ---------------------------------------------------------------------


def test_sane_gateway_latency() -> None:
    assert sane_gateway_latency(0.0042, 41.25) == 0.0042
    assert sane_gateway_latency(0.05, None) == 0.05
    # discord.py's values before the first ACK, and when not connected
    assert sane_gateway_latency(math.inf, 41.25) is None
    assert sane_gateway_latency(math.nan, 41.25) is None
    assert sane_gateway_latency(0.0, 41.25) is None
    assert sane_gateway_latency(-0.001, 41.25) is None
    # an ACK timed from the previous heartbeat: one whole interval (the 30003 ms report)
    assert sane_gateway_latency(30.003, 30.0) is None
    assert sane_gateway_latency(41.251, 41.25) is None
    assert sane_gateway_latency(0.301, 0.3) is None
    assert sane_gateway_latency(0.2, 0.3) is None  # not clearly below a short interval
    assert sane_gateway_latency(12.0, None) is None  # discord.py's own "can't keep up"


def _ms(pattern: str, text: str) -> int:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in {text!r}"
    return int(match.group(1))


async def _ping(h: BotHarness):
    """`!ping`; returns the reply once it shows its figures, and the wall time (ms)."""
    question = None

    async def post():
        nonlocal question
        question = await h.say("!ping")

    started = time.perf_counter()
    waiter = asyncio.create_task(h.next_reply())
    await post()
    reply = await waiter
    await eventually(lambda: reply.content != "Pong!")  # edited with the figures
    elapsed = (time.perf_counter() - started) * 1000
    assert reply.reference_id == question.id
    return reply, elapsed


async def test_ping_shows_the_rest_round_trip_and_no_bogus_heartbeat(tmp_path) -> None:
    async with BotHarness(tmp_path) as h:
        keep_alive = h.bot.ws._keep_alive
        # What discord.py's keep-alive race leaves behind against a fast server: the
        # ACK timed from the previous heartbeat, i.e. one interval (41250 ms here).
        keep_alive.latency = keep_alive.interval + 0.003
        bogus = f"{keep_alive.latency * 1000:.0f}"
        # A slow Discord: posting the reply takes 300 ms.
        h.server.delay_next("POST", r"/channels/\d+/messages$", 0.3)
        reply, elapsed = await _ping(h)
        rest = _ms(r"REST round trip: (\d+) ms", reply.content)
        assert 300 <= rest <= elapsed
        assert bogus not in reply.content
        assert "gateway heartbeat: no reliable reading" in reply.content


async def test_ping_shows_a_sane_heartbeat(tmp_path) -> None:
    async with BotHarness(tmp_path) as h:
        h.bot.ws._keep_alive.latency = 0.0042
        reply, elapsed = await _ping(h)
        assert _ms(r"REST round trip: (\d+) ms", reply.content) <= elapsed
        assert _ms(r"gateway heartbeat: (\d+) ms", reply.content) == 4


# -- slash command sync ----------------------------------------------------------

# What Discord answers a command set it refuses: discord.py turns it into an
# exception whose text runs over several lines.
REFUSED = {
    "code": 50035,
    "message": "Invalid Form Body",
    "errors": {
        "0": {
            "description": {
                "_errors": [
                    {"code": "BASE_TYPE_BAD_LENGTH", "message": "Must be between 1 and 100."}
                ]
            },
            "options": {
                "0": {
                    "name": {
                        "_errors": [
                            {
                                "code": "APPLICATION_COMMAND_INVALID_NAME",
                                "message": "Command name is invalid",
                            }
                        ]
                    }
                }
            },
        }
    },
}
GLOBAL_PUT = r"/applications/\d+/commands$"
GUILD_PUT = r"/applications/\d+/guilds/\d+/commands$"


def _puts(h: BotHarness, pattern: str) -> list:
    return [r for r in h.server.requests if r.method == "PUT" and re.search(pattern, r.path)]


def _sync_warnings(caplog) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "hark.bot" and r.levelno >= logging.WARNING and "slash commands" in r.msg
    ]


async def test_refused_sync_logs_one_line_and_is_not_resent(tmp_path, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="hark.bot")
    h = BotHarness(
        tmp_path,
        plugins={"hello": hello, "fake_llm": fake_plugin(EchoGenerator())},
        config=CHAT,
    )
    await h.server.start()
    h._populate()
    # Discord keeps refusing these payloads (both scopes) until told otherwise.
    global_rule = h.server.fail_next("PUT", GLOBAL_PUT, 400, times=1000, body=REFUSED)
    guild_rule = h.server.fail_next("PUT", GUILD_PUT, 400, times=1000, body=REFUSED)
    try:
        await h.start()
        warnings = _sync_warnings(caplog)
        for record in warnings:  # one line each: status, Discord's code, its message
            text = record.getMessage()
            assert "\n" not in text
            assert "HTTP 400" in text and "50035" in text and "Invalid Form Body" in text
        assert len(warnings) == 2, [r.getMessage() for r in warnings]
        assert len(_puts(h, GLOBAL_PUT)) == 1
        # harness start-up and on_guild_available both sync the guild: sent once
        assert len(_puts(h, GUILD_PUT)) == 1
        assert "global" in warnings[0].getMessage()
        assert f"guild {h.guild.id}" in warnings[1].getMessage()
        details = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
        assert any("Command name is invalid" in d for d in details)

        # a restart: the same refused payloads are not sent again
        caplog.clear()
        await h.restart()
        assert len(_puts(h, GLOBAL_PUT)) == 1 and len(_puts(h, GUILD_PUT)) == 1
        # a plugin toggle that leaves the guild's commands as they were: not sent
        await h.ask("!plugins disable fake_llm", author=h.admin)
        await h.ask("!plugins enable fake_llm", author=h.admin)
        assert len(_puts(h, GUILD_PUT)) == 1
        assert _sync_warnings(caplog) == []

        # the commands change (hello's /hello goes): sent, and Discord takes it
        guild_rule.remaining = 0
        await h.ask("!plugins disable hello", author=h.admin)
        puts = _puts(h, GUILD_PUT)
        assert len(puts) == 2 and puts[-1].status == 200
        assert "hello" not in {c.name for c in h.server.commands(h.guild)}
        assert _sync_warnings(caplog) == []
        assert global_rule.remaining == 999  # the global set was never re-sent
    finally:
        await h.close()


# -- notices ---------------------------------------------------------------------------


async def test_no_llm_notice_names_the_disabled_plugin_with_the_prefix(tmp_path) -> None:
    plugin = fake_plugin(EchoGenerator(), default_enabled=False)
    config = {**CHAT, "prefix": "?"}
    async with BotHarness(tmp_path, plugins={"llm_openrouter": plugin}, config=config) as h:
        notice = await h.ask("robot hello?")
        assert notice.content == (
            "Sorry, no LLM is enabled here: an admin can turn on `llm_openrouter` "
            "with `?plugins enable llm_openrouter`."
        )
        # in a DM only the owner's global default applies
        dm = NoGenerator.for_guild(h.bot.control, None).user_message
        assert "`?plugins global enable llm_openrouter`" in dm
        # ...and the command it gives works
        await h.ask("?plugins enable llm_openrouter", author=h.admin)
        reply = await h.ask("robot hello?")
        await eventually(lambda: not reply.content.endswith("…"))
        assert reply.content == "robot hello?"


async def test_no_llm_notice_without_any_generator(tmp_path) -> None:
    async with BotHarness(tmp_path, config=CHAT) as h:
        notice = await h.ask("robot hello?")
        assert "no LLM is enabled here" in notice.content
        assert "llm_ollama" in notice.content and "plugins enable" not in notice.content


async def test_persona_without_text_replies_to_the_message(tmp_path) -> None:
    async with BotHarness(tmp_path, config=CHAT) as h:
        question = None

        async def post():
            nonlocal question
            question = await h.say("!persona")

        waiter = asyncio.create_task(h.next_reply())
        await post()
        shown = await waiter
        assert "default persona" in shown.content
        assert shown.reference_id == question.id
        assert not shown.mentions
