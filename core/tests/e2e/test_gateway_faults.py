"""Gateway resilience: malformed events, gateway drops and unexpected connection
failures must not end the bot, and must not fill its log with tracebacks.

A real discord.py client and HarkBot against the loopback Discord. The malformed
payloads are shapes Spacebar was seen sending (role objects where discord.py
expects ids, ``"guild_id": null`` and ``"member": null`` in a DM); each one raises
inside discord.py's own parser.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import discord
import pytest

from hark.cli import CliError, run_bot
from hark.config import Config, Secret
from hark.runtime import Runtime
from hark.testing.discord import FakeDiscord
from hark.testing.discord import gateway as gw
from hark.testing.discord.payloads import member_payload, user_payload
from hark.testing.fakes import EchoGenerator, fake_plugin
from hark.testing.harness import BotHarness

CHAT = {"trigger_names": ["robot"], "edit_interval": 0.05, "rate_limit": "0"}


@pytest.fixture
async def chat(tmp_path):
    h = BotHarness(tmp_path, plugins={"fake_llm": fake_plugin(EchoGenerator())}, config=CHAT)
    await h.start()
    try:
        yield h
    finally:
        await h.close()


def message_data(h: BotHarness, content: str, **overrides: Any) -> dict[str, Any]:
    """A MESSAGE_CREATE payload from the ordinary member in #general."""
    data: dict[str, Any] = {
        "id": str(h.server.ids.next()),
        "channel_id": str(h.channel.id),
        "guild_id": str(h.guild.id),
        "type": 0,
        "author": user_payload(h.member.user),
        "member": member_payload(h.member, with_user=False),
        "content": content,
        "timestamp": "2024-01-01T00:00:00.000000+00:00",
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "components": [],
        "pinned": False,
        "flags": 0,
    }
    data.update(overrides)
    return data


def role_object(h: BotHarness) -> dict[str, Any]:
    role = h.guild.everyone_role
    return {"id": str(role.id), "name": "@everyone", "color": 0, "position": 0}


async def send_raw(h: BotHarness, event: str, data: dict[str, Any], *, dm: bool = False) -> None:
    intent = gw.DIRECT_MESSAGES if dm else gw.GUILD_MESSAGES
    h.server.gateway.dispatch(event, data, intent=intent, guild_id=None if dm else h.guild.id)
    await h.server.gateway.flush()


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Records at INFO or above that carry a traceback, in any logger."""
    return [
        r
        for r in caplog.records
        if r.levelno >= logging.INFO
        and (r.exc_info or r.stack_info or "Traceback (most recent call last)" in r.getMessage())
    ]


def warnings_naming(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and text in r.getMessage()
    ]


async def assert_still_answers(h: BotHarness, channel: Any = None) -> None:
    reply = await h.ask("robot, still there?", channel=channel)
    # The echo of this message, not of the dropped one.
    assert await h.final(reply) == "robot, still there?"


# -- malformed events --------------------------------------------------------------


async def test_malformed_message_update_is_dropped(chat: BotHarness, caplog):
    caplog.set_level(logging.INFO)
    original = await chat.say("just chatting")
    # Role objects where discord.py's Message._handle_mention_roles expects ids.
    bad = message_data(chat, "edited", id=str(original.id), mention_roles=[role_object(chat)])
    bad["edited_timestamp"] = "2024-01-01T00:01:00.000000+00:00"
    await send_raw(chat, "MESSAGE_UPDATE", bad)
    await assert_still_answers(chat)

    lines = warnings_naming(caplog, "MESSAGE_UPDATE")
    assert len(lines) == 1, lines
    assert "TypeError" in lines[0]
    assert not tracebacks(caplog)
    # The connection itself never broke.
    assert chat.server.identify_count == 1 and chat.server.resume_count == 0


async def test_malformed_message_create_is_dropped(chat: BotHarness, caplog):
    caplog.set_level(logging.INFO)
    bad = message_data(chat, "robot, answer this", mention_roles=[role_object(chat)])
    await send_raw(chat, "MESSAGE_CREATE", bad)
    await assert_still_answers(chat)

    lines = warnings_naming(caplog, "MESSAGE_CREATE")
    assert len(lines) == 1, lines
    assert "TypeError" in lines[0]
    assert not tracebacks(caplog)
    assert chat.server.identify_count == 1


async def test_malformed_dm_with_null_guild_id_is_dropped(chat: BotHarness, caplog):
    caplog.set_level(logging.INFO)
    dm = chat.server.create_dm(chat.member.user)
    # Spacebar's DM shape: "guild_id": null and "member": null.
    bad = message_data(chat, "hello in private", channel_id=str(dm.id), guild_id=None, member=None)
    await send_raw(chat, "MESSAGE_CREATE", bad, dm=True)
    await assert_still_answers(chat, channel=dm)
    await assert_still_answers(chat)

    lines = warnings_naming(caplog, "MESSAGE_CREATE")
    assert len(lines) == 1, lines
    assert not tracebacks(caplog)
    assert chat.server.identify_count == 1


# -- gateway drops -----------------------------------------------------------------


async def test_gateway_outage_logs_one_warning_per_reconnect_and_no_traceback(
    chat: BotHarness, caplog
):
    caplog.set_level(logging.DEBUG)
    # The server goes away: the socket closes, and the first reconnect is refused.
    chat.server.refuse_gateway(1)
    await chat.server.drop_gateway(resumable=True)
    await chat.server.wait_for_resume(1, timeout=30)
    await assert_still_answers(chat)

    assert chat.server.gateway.refuse_connections == 0, "the refused reconnect happened"
    assert not tracebacks(caplog)
    reconnects = warnings_naming(caplog, "reconnecting")
    assert len(reconnects) == 1, reconnects
    assert "WSServerHandshakeError" in reconnects[0]
    # The traceback is still there for whoever debugs at DEBUG.
    assert any(
        r.levelno == logging.DEBUG and r.exc_info and r.name == "discord.client"
        for r in caplog.records
    )


async def test_unexpected_connection_failure_is_retried(chat: BotHarness, caplog, monkeypatch):
    caplog.set_level(logging.INFO)
    real_from_client = discord.gateway.DiscordWebSocket.from_client.__func__
    calls = 0

    async def flaky_from_client(cls, client, **kwargs):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("unexpected failure inside the connection")
        return await real_from_client(cls, client, **kwargs)

    monkeypatch.setattr(
        discord.gateway.DiscordWebSocket, "from_client", classmethod(flaky_from_client)
    )
    # op 7 RECONNECT: discord.py's reconnect calls from_client, which now fails with
    # an exception discord.py does not handle, so it escapes Client.connect.
    ready_again = asyncio.ensure_future(chat.bot.wait_for("ready", timeout=30))
    chat.server.request_reconnect()
    await ready_again
    await assert_still_answers(chat)

    assert calls == 2 and not chat.bot.is_closed()
    assert chat.server.identify_count == 2  # the retry starts a new session
    lines = warnings_naming(caplog, "unexpected failure inside the connection")
    assert len(lines) == 1, lines
    assert "RuntimeError" in lines[0]
    assert not tracebacks(caplog)


# -- bot run -----------------------------------------------------------------------


@pytest.fixture
async def run_config(tmp_path, monkeypatch):
    """A loopback Discord and a config for ``run_bot`` to use it, no installed plugins."""
    # run_bot points discord.py at the server through class attributes: restore them.
    monkeypatch.setattr(discord.http.Route, "BASE", discord.http.Route.BASE)
    gateway_class = discord.gateway.DiscordWebSocket
    monkeypatch.setattr(gateway_class, "DEFAULT_GATEWAY", gateway_class.DEFAULT_GATEWAY)
    async with FakeDiscord() as server:
        config = Config(
            token=Secret(server.bot_token),
            api_base=server.api_base,
            gateway_url=server.gateway_url,
            data_dir=tmp_path,
            load_plugins=[],
        )
        yield server, config


async def test_bot_run_reports_a_payload_discord_py_cannot_parse_in_one_line(run_config):
    server, config = run_config
    # A /users/@me without "username": discord.py's ClientUser raises KeyError in login.
    server.fail_next("GET", r"/users/@me$", 200, body={"id": "1"})
    with pytest.raises(CliError) as failure:
        await run_bot(config)
    message = str(failure.value)
    assert failure.value.code == 1 and "\n" not in message
    assert message.startswith("unexpected failure talking to Discord: KeyError")


async def test_bot_run_reports_an_api_error_in_one_line(run_config):
    server, config = run_config
    # An endpoint a Discord-compatible server may lack: discord.py raises NotFound.
    server.fail_next("GET", r"/oauth2/applications/@me$", 404)
    with pytest.raises(CliError) as failure:
        await run_bot(config)
    message = str(failure.value)
    assert failure.value.code == 1 and "\n" not in message
    assert "GET /api/v10/oauth2/applications/@me" in message and "404" in message


async def test_bot_run_keeps_the_traceback_of_a_hark_bug(run_config, monkeypatch):
    async def broken_open(self):
        raise RuntimeError("a bug in Hark")

    # Raised through HarkBot.setup_hook: Hark's own code, so not reduced to one line.
    monkeypatch.setattr(Runtime, "open", broken_open)
    with pytest.raises(RuntimeError, match="a bug in Hark"):
        await run_bot(run_config[1])
