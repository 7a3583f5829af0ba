"""End to end: the real HarkBot and discord.py client on the loopback Discord server,
the plugin's connection on the loopback Twitch, a scriptable fake LLM."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fake_twitch import (
    FakeTwitch,
    chat_event,
    cheer_event,
    closed_port,
    follow_event,
    gift_event,
    raid_event,
    subscribe_event,
)
from twitch_support import (
    CHANNEL,
    CHAT,
    FAST,
    TOKEN,
    eventually,
    plugins,
    set_env,
    system_text,
)

from hark.store import SQLiteDatabase
from hark.testing.fakes import EchoGenerator, FakeGenerator
from hark.testing.harness import BotHarness


def commentator(messages) -> str:
    """Comments on the event it was given (the last user message)."""
    return f"Wow! {messages[-1].content.removeprefix('Twitch: ')}"


async def start(
    tmp_path, monkeypatch, twitch: FakeTwitch | None, generator=None, *, env=None, config=None
) -> BotHarness:
    values = twitch.env(TOKEN, CHANNEL, **FAST) if twitch is not None else {}
    set_env(monkeypatch, {**values, **(env or {})})
    generator = generator or FakeGenerator(commentator)
    h = BotHarness(tmp_path, plugins=plugins(generator), config={**CHAT, **(config or {})})
    h.generator = generator
    await h.start()
    h.cog = h.bot.get_cog("Twitch")
    return h


@pytest.fixture
async def bot(tmp_path, monkeypatch, twitch: FakeTwitch) -> AsyncIterator[BotHarness]:
    """A bot following the fake Twitch channel, with #general linked, no rate limit."""
    h = await start(tmp_path, monkeypatch, twitch)
    try:
        await h.cog.connection.wait_connected(10)
        await twitch.wait_for_subscriptions()
        await h.ask(f"!config twitch channel_id <#{h.channel.id}>", author=h.admin)
        await h.ask("!config twitch min_interval 0", author=h.admin)
        yield h
    finally:
        await h.close()


async def next_comment(h: BotHarness, timeout: float = 10) -> Any:
    message = await h.next_reply(timeout=timeout)
    async with asyncio.timeout(10):
        while message.content.endswith("…"):
            await asyncio.sleep(0.02)
    return message


async def test_raid_gets_a_comment_in_the_linked_channel(bot: BotHarness, twitch, streamer):
    waiter = asyncio.create_task(next_comment(bot))
    await asyncio.sleep(0)
    assert await twitch.send_event("channel.raid", raid_event(streamer, "alice", 42)) == 1
    message = await waiter
    assert message.content == "Wow! alice raided the channel with 42 viewers"
    assert message.allowed_mentions == {"parse": []}
    # The turn went through the conversation pipeline: persona, then the event.
    request = bot.generator.requests[-1]
    assert "friendly" in request.messages[0].content
    last = request.messages[-1]
    assert (last.role, last.name, last.content) == (
        "user",
        "Twitch",
        "Twitch: alice raided the channel with 42 viewers",
    )
    # ...and was recorded to the channel's history like a normal turn.
    await eventually(lambda: bot.cog.comments == 1)
    entries = await bot.bot.runtime.history.recent(bot.channel.id, 10)
    assert [(e.role, e.author_name) for e in entries][-2:] == [
        ("user", "Twitch"),
        ("assistant", bot.bot.get_guild(bot.guild.id).me.display_name),
    ]


async def test_each_event_kind_is_described(bot: BotHarness, twitch, streamer):
    await bot.ask("!config twitch chattiness high", author=bot.admin)
    events = [
        ("channel.follow", follow_event(streamer, "fay"), "fay followed the channel"),
        (
            "channel.subscribe",
            subscribe_event(streamer, "gus", tier="2000"),
            "gus subscribed at Tier 2",
        ),
        (
            "channel.subscription.gift",
            gift_event(streamer, None, total=5),
            "an anonymous viewer gifted 5 Tier 1 subs",
        ),
        (
            "channel.cheer",
            cheer_event(streamer, "hal", 500, text="gg"),
            'hal cheered 500 bits: "gg"',
        ),
    ]
    for type_, event, text in events:
        waiter = asyncio.create_task(next_comment(bot))
        await asyncio.sleep(0)
        await twitch.send_event(type_, event)
        assert (await waiter).content == f"Wow! {text}"
        await eventually(lambda: not bot.cog._commenting)


async def test_a_gifted_sub_is_not_commented_twice(bot: BotHarness, twitch, streamer):
    # Twitch sends the gift event and a channel.subscribe (is_gift) per recipient.
    waiter = asyncio.create_task(next_comment(bot))
    await asyncio.sleep(0)
    await twitch.send_event("channel.subscription.gift", gift_event(streamer, "ivy", total=2))
    for name in ("r1", "r2"):
        await twitch.send_event("channel.subscribe", subscribe_event(streamer, name, is_gift=True))
    assert (await waiter).content == "Wow! ivy gifted 2 Tier 1 subs"
    await bot.expect_silence(within=0.5)


async def test_chat_reaches_the_prompt_of_the_next_turn(bot: BotHarness, twitch, streamer):
    await twitch.send_event("channel.chat.message", chat_event(streamer, "kim", "first time here!"))
    await twitch.send_event("channel.raid", raid_event(streamer, "lee", 7))
    await eventually(lambda: bot.cog.comments == 1)
    # An ordinary Discord question afterwards sees the recent activity.
    reply = await bot.ask("robot, who just raided?")
    async with asyncio.timeout(10):
        while reply.content.endswith("…"):
            await asyncio.sleep(0.02)
    context = system_text(bot.generator.requests[-1])
    assert "Recent Twitch activity on twitch.tv/streamer" in context
    assert 'kim in chat: "first time here!"' in context
    assert "lee raided the channel with 7 viewers" in context
    assert context.index("kim in chat") < context.index("lee raided")


async def test_chattiness_off_means_no_comment(bot: BotHarness, twitch, streamer):
    await bot.ask("!config twitch chattiness off", author=bot.admin)
    await twitch.send_event("channel.raid", raid_event(streamer, "alice", 42))
    await bot.expect_silence(within=0.7)
    assert bot.cog.comments == 0 and bot.generator.requests == []
    # The event still became context.
    assert "alice raided" in bot.cog.activity.render()


async def test_low_chattiness_skips_follows(bot: BotHarness, twitch, streamer):
    await bot.ask("!config twitch chattiness low", author=bot.admin)
    await twitch.send_event("channel.follow", follow_event(streamer, "mo"))
    await twitch.send_event("channel.cheer", cheer_event(streamer, "mo", 10))
    await bot.expect_silence(within=0.5)
    waiter = asyncio.create_task(next_comment(bot))
    await asyncio.sleep(0)
    await twitch.send_event("channel.raid", raid_event(streamer, "ned", 3))
    assert "ned raided" in (await waiter).content


async def test_rate_limit_holds(bot: BotHarness, twitch, streamer):
    await bot.ask("!config twitch min_interval 60", author=bot.admin)
    waiter = asyncio.create_task(next_comment(bot))
    await asyncio.sleep(0)
    for i in range(6):
        await twitch.send_event("channel.raid", raid_event(streamer, f"raider{i}", 10 + i))
    first = await waiter
    assert "raider0" in first.content
    await bot.expect_silence(within=1.0)
    assert bot.cog.comments == 1 and bot.cog.skipped_comments == 5
    # The skipped raids are still known to the model.
    assert all(f"raider{i}" in bot.cog.activity.render() for i in range(6))


async def test_comment_is_spoken_when_the_bot_can_speak(bot: BotHarness, twitch, streamer):
    spoken: list[tuple[int, str]] = []

    async def speak(guild_id: int, text: str) -> bool:
        spoken.append((guild_id, text))
        return True

    bot.bot.speak = speak
    await twitch.send_event("channel.raid", raid_event(streamer, "alice", 3))
    await eventually(lambda: spoken)
    assert spoken == [(bot.guild.id, "Wow! alice raided the channel with 3 viewers")]


async def test_disabled_plugin_or_unlinked_server_gets_no_comment(
    bot: BotHarness, twitch, streamer
):
    await bot.ask("!plugins disable twitch", author=bot.admin)
    await twitch.send_event("channel.raid", raid_event(streamer, "alice", 3))
    await bot.expect_silence(within=0.5)
    await bot.ask("!plugins enable twitch", author=bot.admin)
    await bot.ask("!config twitch channel_id reset", author=bot.admin)
    await twitch.send_event("channel.raid", raid_event(streamer, "bob", 3))
    await bot.expect_silence(within=0.5)
    assert bot.cog.comments == 0


async def test_status_and_config_commands(bot: BotHarness, twitch, streamer):
    await twitch.send_event("channel.raid", raid_event(streamer, "alice", 42))
    await eventually(lambda: bot.cog.comments == 1)
    status = (await bot.ask("!twitch status")).content
    assert status.startswith("**Twitch**: connected to twitch.tv/streamer as streamer")
    assert "raids ✅" in status and "chat messages ✅" in status
    assert "Last event: alice raided the channel with 42 viewers" in status
    assert f"commentary in <#{bot.channel.id}>, chattiness normal" in status
    assert TOKEN not in status

    # The settings and where they come from; the secrets only as set or not.
    shown = (await bot.ask("!config twitch")).content
    assert f"`channel_id` = `{bot.channel.id}` (this server)" in shown
    assert "`min_interval` = `0.0` (this server)" in shown
    assert "`chattiness` = `normal` (default)" in shown
    assert "`twitch_channel` = `streamer` (env TWITCH_CHANNEL)" in shown
    assert "secret `TWITCH_ACCESS_TOKEN`: set" in shown
    assert "secret `TWITCH_REFRESH_TOKEN`: not set" in shown and "(required)" not in shown
    assert TOKEN not in shown and twitch.client_id not in shown

    # Changing anything needs Manage Server; looking does not.
    denied = await bot.ask(f"!config twitch channel_id <#{bot.channel.id}>")
    assert "Manage Server" in denied.content
    denied = await bot.ask("!config twitch chattiness high")
    assert "Manage Server" in denied.content
    shown = await bot.ask("!config twitch chattiness")
    assert shown.content.startswith("`twitch.chattiness` = `normal` (default)")
    assert "low (raids, gift subs)" in shown.content
    bad = await bot.ask("!config twitch chattiness loud", author=bot.admin)
    assert bad.content == (
        "Nothing changed: `chattiness` must be one of `off`, `low`, `normal`, `high`."
    )
    bad = await bot.ask("!config twitch channel_id #nowhere", author=bot.admin)
    assert bad.content == "Nothing changed: `channel_id` must be a text channel, such as #stream."
    bad = await bot.ask("!config twitch min_interval -5", author=bot.admin)
    assert bad.content.startswith("Nothing changed: `min_interval` must be a number")
    assert bot.cog.here(bot.guild.id).chattiness == "normal"
    # The stream is the owner's to set, bot-wide.
    refused = await bot.ask("!config twitch twitch_channel other", author=bot.admin)
    assert "can't be set in this server; it can be set bot-wide (owner)" in refused.content

    done = await bot.ask("!config twitch chattiness HIGH", author=bot.admin)
    assert done.content == "`twitch.chattiness` is now `high` in this server."
    status = (await bot.ask("!twitch")).content
    assert "chattiness high (comments on raids, gift subs, subs, resubs, cheers, follows)" in status

    # Unlinked, status says how to link again.
    await bot.ask("!config twitch channel_id none", author=bot.admin)
    status = (await bot.ask("!twitch")).content
    assert "no channel linked for commentary (`!config twitch channel_id #channel`" in status


async def test_callsign_in_twitch_chat_is_answered_there_rate_limited(
    tmp_path, monkeypatch, twitch: FakeTwitch, streamer
):
    h = await start(
        tmp_path,
        monkeypatch,
        twitch,
        EchoGenerator(),
        env={"TWITCH_CHAT_REPLIES": "on", "TWITCH_CHAT_RATE": "2/60"},
    )
    try:
        await h.cog.connection.wait_connected(10)
        await twitch.wait_for_subscriptions()
        question = chat_event(streamer, "viewer1", "hey robot what game is this?")
        await twitch.send_event("channel.chat.message", question)
        await twitch.wait_for(lambda: len(twitch.chat_messages) == 1)
        sent = twitch.chat_messages[0]
        assert sent["message"] == "hey robot what game is this?"
        assert sent["reply_parent_message_id"] == question["message_id"]
        assert sent["sender_id"] == streamer.id
        # Twitch echoes the bot's own message back: it is not answered again.
        await asyncio.sleep(0.3)
        assert len(twitch.chat_messages) == 1
        # Without a callsign: nothing.
        await twitch.send_event("channel.chat.message", chat_event(streamer, "v2", "nice play"))
        # The rate limit (2 per minute) holds.
        for i in range(4):
            await twitch.send_event(
                "channel.chat.message", chat_event(streamer, f"v{i}", f"robot, question {i}?")
            )
        await twitch.wait_for(lambda: len(twitch.chat_messages) == 2)
        await asyncio.sleep(0.5)
        assert len(twitch.chat_messages) == 2
        assert h.cog.chat_replies == 2
    finally:
        await h.close()


async def test_bot_keeps_answering_while_twitch_is_down(tmp_path, monkeypatch, caplog):
    port = closed_port()
    down = f"http://127.0.0.1:{port}"
    env = {
        "TWITCH_CLIENT_ID": "client",
        "TWITCH_ACCESS_TOKEN": TOKEN,
        "TWITCH_CHANNEL": CHANNEL,
        "TWITCH_API_BASE": f"{down}/helix/",
        "TWITCH_AUTH_BASE": f"{down}/oauth2/",
        "TWITCH_EVENTSUB_URL": f"ws://127.0.0.1:{port}/ws",
        **FAST,
    }
    caplog.set_level(logging.DEBUG)
    h = await start(tmp_path, monkeypatch, None, EchoGenerator(), env=env)
    try:
        await eventually(lambda: h.cog.connection.attempt >= 3)
        reply = await h.ask("!ask what is two plus two?")
        async with asyncio.timeout(10):
            while reply.content.endswith("…"):
                await asyncio.sleep(0.02)
        assert reply.content == "what is two plus two?"
        chat = await h.ask("robot, are you there?")
        assert chat.content.startswith("robot, are you there?")
        status = (await h.ask("!twitch status")).content
        assert "not connected to twitch.tv/streamer, reconnecting" in status
        assert "could not connect to Twitch (token validation)" in status
        assert h.cog.connection.running
        assert TOKEN not in caplog.text
    finally:
        await h.close()


async def test_not_configured_loads_idle_and_says_what_is_missing(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="hark_twitch")
    h = await start(tmp_path, monkeypatch, None, EchoGenerator(), env={"TWITCH_CHANNEL": "x"})
    try:
        assert not h.cog.connection.running
        lines = [r.getMessage() for r in caplog.records if r.name == "hark_twitch"]
        assert lines == [
            "Twitch: not configured (TWITCH_CLIENT_ID, TWITCH_ACCESS_TOKEN not set); "
            "the plugin stays idle."
        ]
        status = (await h.ask("!twitch status")).content
        assert status == (
            "**Twitch**: not configured. TWITCH_CLIENT_ID, TWITCH_ACCESS_TOKEN are not set "
            "in the bot's environment, so there is no stream to follow."
        )
        assert (await h.ask("!ask hello")).content == "hello"
        listing = (await h.ask("!plugins")).content
        assert "needs `TWITCH_CLIENT_ID` — needs `TWITCH_ACCESS_TOKEN`" in listing
    finally:
        await h.close()


async def test_connection_stops_with_the_bot(tmp_path, monkeypatch, twitch: FakeTwitch):
    h = await start(tmp_path, monkeypatch, twitch, EchoGenerator())
    try:
        await h.cog.connection.wait_connected(10)
        connection = h.cog.connection
    finally:
        await h.close()
    assert not connection.running and connection.state == "stopped"
    await eventually(lambda: not twitch.live_sessions())


async def test_events_fan_out_to_every_linked_server(bot: BotHarness, twitch, streamer):
    server = bot.server
    other = server.create_guild("Other Server")
    stream = server.create_text_channel(other, "stream")
    await eventually(lambda: bot.bot.get_channel(stream.id) is not None)
    await bot.ask(f"!config twitch channel_id <#{stream.id}>", author=server.owner, channel=stream)
    await bot.ask("!config twitch min_interval 0", author=server.owner, channel=stream)

    here = asyncio.create_task(next_comment(bot))
    there = asyncio.create_task(bot.next_reply(channel=stream))
    await asyncio.sleep(0)
    await twitch.send_event("channel.raid", raid_event(streamer, "alice", 42))
    assert (await here).content == "Wow! alice raided the channel with 42 viewers"
    assert (await there).content.startswith("Wow! alice raided")
    await eventually(lambda: bot.cog.comments == 2)
    # Each server's turn ran with its own guild id.
    guilds = {r.guild_id for r in bot.generator.requests}
    assert guilds == {bot.guild.id, other.id}


async def test_status_names_missing_scopes(tmp_path, monkeypatch, twitch: FakeTwitch):
    twitch.add_token("chat-only-token-abc", CHANNEL, scopes=["user:read:chat"])
    set_env(monkeypatch, twitch.env("chat-only-token-abc", CHANNEL, **FAST))
    h = BotHarness(tmp_path, plugins=plugins(EchoGenerator()), config=CHAT)
    await h.start()
    try:
        await h.bot.get_cog("Twitch").connection.wait_connected(10)
        status = (await h.ask("!twitch status")).content
        assert (
            "⚠ The Twitch token of streamer is missing the scopes moderator:read:followers, "
            "channel:read:subscriptions, bits:read (needed for follows, subscriptions, resubs, "
            "gift subs, cheers); authorize it again with them to get those events."
        ) in status
        assert "cheers ❌ (missing scope bits:read)" in status and "raids ✅" in status
    finally:
        await h.close()


async def test_owner_turns_chat_replies_on_bot_wide(bot: BotHarness, twitch, streamer):
    """Twitch chat replies are bot-wide values: only the owner sets them, and they apply
    to the next chat message (the connection's own settings wait for the next start)."""
    question = chat_event(streamer, "viewer1", "robot, you there?")
    await twitch.send_event("channel.chat.message", question)
    await asyncio.sleep(0.3)
    assert twitch.chat_messages == []

    refused = await bot.ask("!config twitch chat_replies on --global", author=bot.admin)
    assert "owner" in refused.content.lower()
    done = await bot.ask("!config twitch chat_replies on --global", author=bot.server.owner)
    assert done.content == "`twitch.chat_replies` is now `on` bot-wide."
    await bot.ask("!config twitch callsigns hey bot, robot --global", author=bot.server.owner)

    await twitch.send_event("channel.chat.message", chat_event(streamer, "v2", "hey bot, hi!"))
    await twitch.wait_for(lambda: len(twitch.chat_messages) == 1)
    assert twitch.chat_messages[0]["message"].startswith("Wow!")
    status = (await bot.ask("!twitch status")).content
    assert "Twitch chat replies: on (callsigns: hey bot, robot, at most 3 per 60s)." in status


async def test_choices_stored_by_the_old_commands_are_kept(
    tmp_path, monkeypatch, twitch: FakeTwitch, streamer
):
    """A database written by the old `!twitch link / chattiness / interval` commands (the
    same settings rows: namespace twitch, scope guild:<id>, keys channel_id, chattiness,
    min_interval) keeps every server's choices."""
    h = await start(tmp_path, monkeypatch, twitch)
    try:
        other = h.server.create_guild("Other Server")
        stream = h.server.create_text_channel(other, "stream")
        await h.stop()
        await eventually(lambda: not twitch.live_sessions())
        db = SQLiteDatabase(h.data_dir / "hark.sqlite3")
        await db.open()
        rows = [
            (f"guild:{h.guild.id}", "channel_id", h.channel.id),
            (f"guild:{h.guild.id}", "chattiness", "low"),
            (f"guild:{h.guild.id}", "min_interval", 0.0),
            (f"guild:{other.id}", "channel_id", stream.id),
            (f"guild:{other.id}", "chattiness", "high"),
            (f"guild:{other.id}", "min_interval", 0),
        ]
        for scope, key, value in rows:  # exactly what SettingsStore.write used to insert
            await db.execute(
                "INSERT INTO settings (namespace, scope, key, value) VALUES (?, ?, ?, ?)",
                ("twitch", scope, key, json.dumps(value)),
            )
        await db.close()
        await h.start()
        h.cog = h.bot.get_cog("Twitch")
        await h.cog.connection.wait_connected(10)
        await twitch.wait_for_subscriptions()

        # A follow: only the server at `high` comments on it.
        there = asyncio.create_task(h.next_reply(channel=stream))
        await asyncio.sleep(0)
        await twitch.send_event("channel.follow", follow_event(streamer, "fay"))
        assert (await there).content.startswith("Wow! fay followed the channel")
        await h.expect_silence(within=0.5)
        await eventually(lambda: not h.cog._commenting)

        # A raid: both linked channels.
        here = asyncio.create_task(next_comment(h))
        there = asyncio.create_task(h.next_reply(channel=stream))
        await asyncio.sleep(0)
        await twitch.send_event("channel.raid", raid_event(streamer, "alice", 42))
        assert (await here).content == "Wow! alice raided the channel with 42 viewers"
        assert (await there).content.startswith("Wow! alice raided")

        shown = (await h.ask("!config twitch")).content
        assert f"`channel_id` = `{h.channel.id}` (this server)" in shown
        assert "`chattiness` = `low` (this server)" in shown
        assert "`min_interval` = `0.0` (this server)" in shown
        assert h.cog.here(other.id).channel_id == stream.id
    finally:
        await h.close()


async def test_a_server_cannot_link_another_servers_channel(bot: BotHarness, twitch, streamer):
    other = bot.server.create_guild("Other Server")
    elsewhere = bot.server.create_text_channel(other, "elsewhere")
    await eventually(lambda: bot.bot.get_channel(elsewhere.id) is not None)
    done = await bot.ask(f"!config twitch channel_id {elsewhere.id}", author=bot.admin)
    assert "is now" in done.content  # the model can't tell whose channel it is...
    await twitch.send_event("channel.raid", raid_event(streamer, "alice", 42))
    # ...but commentary only ever goes to a channel of the server that linked it.
    await bot.expect_silence(channel=elsewhere, within=0.7)
    assert bot.cog.comments == 0
