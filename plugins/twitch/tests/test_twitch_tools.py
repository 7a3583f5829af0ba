"""The plugin's tools, twitch_status and twitch_recent_events: through the core's
run_tool against a real connection to the loopback Twitch, then end to end with
the real bot on the loopback Discord and a scripted model that calls them."""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace

import pytest
from fake_twitch import FakeTwitch, raid_event
from hark_twitch import (
    RecentEvents,
    TwitchConnection,
    TwitchEvent,
    parse_notification,
    plugin,
    twitch_recent_events,
    twitch_status,
)
from hark_twitch.tools import attach, detach
from twitch_support import CHANNEL, CHAT, FAST, TOKEN, config_from, eventually, plugins, set_env

from hark import ContextRequest, Tool, ToolCall, ToolContext, ToolResult
from hark.testing.fakes import FakeGenerator, tool_call, tool_results
from hark.testing.harness import BotHarness
from hark.tools import run_tool

GUILD = 111
OTHER_GUILD = 222


class Host:
    """Stands for a bot's host: the key the Cog attaches its connection under."""


async def call(
    tool: Tool, ctx: ToolContext, arguments: dict | str | None = None, id: str = "c1"
) -> ToolResult:
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments or {})
    return await run_tool(tool, ToolCall(id, tool.name, raw), ctx)


def context(host: object, guild_id: int | None = GUILD) -> ToolContext:
    request = ContextRequest(text="is the stream on?", guild_id=guild_id, channel_id=5)
    return ToolContext(request, host=host)


@pytest.fixture
async def attached(twitch: FakeTwitch, connect) -> AsyncIterator[SimpleNamespace]:
    """A connected connection and an event buffer, attached under a host as the Cog does."""
    connection = connect()
    await connection.wait_connected(10)
    host = Host()
    source = SimpleNamespace(connection=connection, recent=RecentEvents(), host=host)
    attach(host, source)
    yield source
    detach(host, source)


def event(name: str, at: float, message_id: str = "") -> TwitchEvent:
    parsed = parse_notification(
        {
            "metadata": {"message_id": message_id, "subscription_type": "channel.follow"},
            "payload": {"event": {"user_name": name, "user_id": "9"}},
        }
    )
    assert parsed is not None
    parsed.at = at
    return parsed


# -- declaration ------------------------------------------------------------------


def test_the_plugin_offers_both_tools_with_bounded_arguments():
    assert [t.name for t in plugin.tools] == ["twitch_status", "twitch_recent_events"]
    for tool in plugin.tools:
        assert tool.permission is None  # read-only
        assert tool.timeout == 10
        assert len(tool.description) > 80
    status = twitch_status.spec().parameters["properties"]["channel"]
    assert status["type"] == "string" and status["default"] == ""
    assert "twitch.tv/NAME" in status["description"]
    count = twitch_recent_events.spec().parameters["properties"]["count"]
    assert (count["minimum"], count["maximum"], count["default"]) == (1, 20, 5)
    assert "newest first" in count["description"]


# -- twitch_status ------------------------------------------------------------------


async def test_status_of_a_live_stream(twitch: FakeTwitch, streamer, attached):
    started = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=2, minutes=5)
    twitch.go_live(
        CHANNEL, title="Any% runs  @everyone", game="Celeste", viewers=1234, started_at=started
    )
    result = await call(twitch_status, context(attached.host))
    assert not result.error, result.content
    lines = result.content.splitlines()
    assert lines[0] == "StreamerName (twitch.tv/streamer) is live now."
    # Twitch's title can say anything: it reaches the model without a working mention.
    assert lines[1] == 'Title: "Any% runs @\u200beveryone"'
    assert lines[2:4] == ["Category: Celeste", "Viewers: 1234"]
    assert lines[4] == f"Started: {started:%Y-%m-%d %H:%M} UTC (live for 2 h 5 min)"
    # One Helix request, for this channel, with the connection's own credentials.
    (request,) = twitch.requests_to("GET", "/helix/streams")
    assert request.query["user_id"] == [streamer.id]
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert twitch.requests_to("GET", "/helix/channels") == []
    # Naming the followed channel (in any common spelling) is the same question.
    for spelling in ("streamer", "#Streamer", "https://www.twitch.tv/streamer/", "@STREAMER"):
        named = await call(twitch_status, context(attached.host), {"channel": spelling})
        assert named.content.splitlines()[0] == lines[0], spelling


async def test_status_of_an_offline_channel_names_its_last_title(
    twitch: FakeTwitch, streamer, attached
):
    twitch.set_channel(CHANNEL, title="Late night Celeste", game="Celeste")
    result = await call(twitch_status, context(attached.host))
    assert not result.error
    assert result.content.splitlines() == [
        "StreamerName (twitch.tv/streamer) is offline.",
        'Last title: "Late night Celeste"',
        "Last category: Celeste",
    ]
    (request,) = twitch.requests_to("GET", "/helix/channels")
    assert request.query["broadcaster_id"] == [streamer.id]
    # A stream that ended is offline again; a channel with no title says only that.
    twitch.go_live(CHANNEL, title="On now", game="Chess", viewers=3)
    assert "is live now" in (await call(twitch_status, context(attached.host))).content
    twitch.go_offline(CHANNEL)
    twitch.set_channel(CHANNEL)
    result = await call(twitch_status, context(attached.host))
    assert result.content == "StreamerName (twitch.tv/streamer) is offline."


@pytest.mark.parametrize(
    ("status", "times", "said"),
    [
        (
            500,
            1,
            "Twitch returned an error (the stream lookup of 'streamer') [HTTP 503];"
            " it may work again in a moment)",
        ),
        (503, 2, "[HTTP 503]; it may work again"),
        (
            401,
            1,
            "Twitch rejected the API key (HTTP 401); check TWITCH_ACCESS_TOKEN"
            " (the stream lookup of 'streamer'))",
        ),
    ],
    ids=["500", "503-twice", "401"],
)
async def test_a_helix_failure_is_an_error_result(
    twitch: FakeTwitch, attached, status, times, said
):
    twitch.fail_next("GET", "/helix/streams", status, times=times)
    result = await call(twitch_status, context(attached.host))
    assert result.error
    assert result.content.startswith("error: twitch_status failed (Twitch ")
    assert "the stream lookup of 'streamer'" in result.content
    assert said in result.content
    assert TOKEN not in result.content
    # The connection is not hurt: the next call works.
    twitch.go_live(CHANNEL, title="Back", viewers=1)
    assert "is live now" in (await call(twitch_status, context(attached.host))).content


async def test_a_failed_channel_lookup_is_an_error_result_too(twitch: FakeTwitch, attached):
    twitch.fail_next("GET", "/helix/channels", 500)
    result = await call(twitch_status, context(attached.host))
    assert result.error and "the channel lookup of 'streamer'" in result.content


async def test_a_channel_the_bot_does_not_follow_is_refused(twitch: FakeTwitch, attached):
    twitch.add_user("elsewhere")
    twitch.go_live("elsewhere", title="Not ours", viewers=99)
    result = await call(twitch_status, context(attached.host), {"channel": "twitch.tv/Elsewhere"})
    assert result.error
    assert "twitch.tv/elsewhere is not a channel this server follows" in result.content
    assert "the bot follows only twitch.tv/streamer" in result.content
    assert "Not ours" not in result.content
    assert twitch.requests_to("GET", "/helix/streams") == []
    too_long = await call(twitch_status, context(attached.host), {"channel": "x" * 101})
    assert too_long.error and "invalid arguments: channel" in too_long.content


async def test_status_without_a_usable_connection(twitch: FakeTwitch):
    host = Host()
    # Not set up at all.
    idle = SimpleNamespace(connection=TwitchConnection(config_from({})), recent=RecentEvents())
    attach(host, idle)
    result = await call(twitch_status, context(host))
    assert result.error and "Twitch is not set up on this bot" in result.content
    result = await call(twitch_recent_events, context(host))
    assert result.error and "Twitch is not set up on this bot" in result.content
    # Set up, but not connected (yet, or any more).
    down = SimpleNamespace(
        connection=TwitchConnection(config_from(twitch.env(TOKEN, CHANNEL, **FAST))),
        recent=RecentEvents(),
    )
    down.connection.error = "could not connect to Twitch (token validation)"
    down.connection.state = "reconnecting"
    attach(host, down)
    result = await call(twitch_status, context(host))
    assert result.error
    assert "not connected to Twitch right now (reconnecting: could not connect" in result.content
    assert twitch.requests == []
    # A bot where the plugin's Cog never attached (or a bare context).
    detach(host, down)
    for ctx in (context(host), context(None)):
        result = await call(twitch_status, ctx)
        assert result.error and "not running in this bot" in result.content


# -- twitch_recent_events --------------------------------------------------------------


async def test_recent_events_newest_first_capped_and_per_server(attached):
    now = time.time()
    for i in range(25):  # more than a server keeps: the oldest 5 fall out
        attached.recent.add(GUILD, event(f"fan{i}", now - (25 - i) * 60, f"m{i}"))
    attached.recent.add(OTHER_GUILD, event("stranger", now - 5))
    attached.recent.add(GUILD, event("newest", now - 2))

    result = await call(twitch_recent_events, context(attached.host), {"count": 3})
    assert not result.error
    assert result.content.splitlines() == [
        "The last 3 events on twitch.tv/streamer seen in this server, newest first:",
        "- just now (follow): newest followed the channel",
        "- 1 min ago (follow): fan24 followed the channel",
        "- 2 min ago (follow): fan23 followed the channel",
    ]
    default = await call(twitch_recent_events, context(attached.host))
    assert len(default.content.splitlines()) == 1 + 5
    most = await call(twitch_recent_events, context(attached.host), {"count": 20})
    lines = most.content.splitlines()[1:]
    assert len(lines) == 20 and "fan6 " in lines[-1] and "fan5 " not in most.content
    assert "stranger" not in most.content  # another server's
    # Out of bounds: the model is told, nothing runs.
    for bad in ({"count": 0}, {"count": 21}, {"count": "many"}):
        refused = await call(twitch_recent_events, context(attached.host), bad)
        assert refused.error and "invalid arguments: count" in refused.content
    other = await call(twitch_recent_events, context(attached.host, OTHER_GUILD))
    assert other.content.splitlines()[1:] == ["- just now (follow): stranger followed the channel"]


async def test_recent_events_when_none_were_seen(attached):
    result = await call(twitch_recent_events, context(attached.host))
    assert not result.error
    assert result.content.startswith(
        "No events from twitch.tv/streamer seen in this server since the bot started"
    )
    # Outside a server (a DM, Twitch chat): the bot-wide ring.
    attached.recent.add(None, event("anyone", time.time() - 3700))
    result = await call(twitch_recent_events, context(attached.host, None))
    assert result.content.splitlines() == [
        "The last 1 event on twitch.tv/streamer seen by the bot, newest first:",
        "- 1 h 1 min ago (follow): anyone followed the channel",
    ]


def test_recent_events_buffer_is_bounded_and_forgets_servers_the_bot_left():
    recent = RecentEvents(per_server=3)
    for i in range(10):
        for guild in (None, 1, 2):
            recent.add(guild, event(f"u{i}", float(i)))
    assert [e.user_name for e in recent.latest(1, 10)] == ["u9", "u8", "u7"]
    assert recent.latest(1, 2) == recent.latest(1, 10)[:2]
    assert recent.latest(3, 5) == [] and recent.latest(1, 0) == []
    recent.keep_only({2})
    assert recent.servers() == [None, 2]


# -- end to end ------------------------------------------------------------------------


def answers_with(tool: str, **arguments) -> Callable:
    """A model that calls ``tool`` once, then answers with what it read."""

    def script(messages):
        results = tool_results(messages)
        if results:
            return f"Here is what Twitch says: {results[0]}"
        return ["Let me check. ", tool_call(tool, **arguments)]

    return script


@pytest.fixture
async def tool_bot(tmp_path, monkeypatch, twitch: FakeTwitch) -> AsyncIterator[BotHarness]:
    set_env(monkeypatch, twitch.env(TOKEN, CHANNEL, **FAST))
    generator = FakeGenerator(answers_with("twitch_status"), supports_tools=True, chunk_size=16)
    h = BotHarness(tmp_path, plugins=plugins(generator), config=CHAT)
    h.generator = generator
    await h.start()
    h.cog = h.bot.get_cog("Twitch")
    try:
        await h.cog.connection.wait_connected(10)
        await twitch.wait_for_subscriptions()
        yield h
    finally:
        await h.close()


async def test_the_model_asks_twitch_status_and_the_answer_posts(
    tool_bot: BotHarness, twitch: FakeTwitch
):
    twitch.go_live(CHANNEL, title="Speedruns <@&123456789012345678>", game="Celeste", viewers=42)
    reply = await tool_bot.ask("robot, is the stream live right now?")
    text = await tool_bot.final(reply)
    assert text.startswith("Let me check. \n\nHere is what Twitch says: StreamerName")
    assert "is live now." in text and "Category: Celeste" in text and "Viewers: 42" in text
    assert "<@\u200b&123456789012345678>" in text  # defused in the tool's result
    assert not reply.mention_everyone and reply.mention_roles == []
    assert reply.allowed_mentions.get("parse") == []
    generator = tool_bot.generator
    assert set(generator.offered_tools[0]) >= {"twitch_status", "twitch_recent_events"}
    last = generator.requests[1].messages
    assert last[-2].tool_calls[0].name == "twitch_status"
    assert last[-1].role == "tool" and last[-1].content.startswith("StreamerName")
    # History keeps the question and the final answer only.
    entries = await tool_bot.bot.runtime.history.recent(tool_bot.channel.id, 10)
    assert [e.role for e in entries] == ["user", "assistant"]
    # Where the plugin is off, its tools are not offered.
    await tool_bot.ask("!plugins disable twitch", author=tool_bot.admin)
    generator.replies = "Nothing to look up."
    await tool_bot.final(await tool_bot.ask("robot, is the stream live?"))
    assert "twitch_status" not in generator.offered_tools[-1]


async def test_the_model_reads_the_events_this_server_saw(
    tool_bot: BotHarness, twitch: FakeTwitch, streamer
):
    h, cog = tool_bot, tool_bot.cog
    # While the plugin is off here, this server sees nothing (the bot-wide ring does).
    await h.ask("!plugins disable twitch", author=h.admin)
    await twitch.send_event("channel.raid", raid_event(streamer, "unseen", 5))
    await eventually(lambda: cog.recent.latest(None, 5))
    await h.ask("!plugins enable twitch", author=h.admin)
    for name, viewers in (("alice", 42), ("bob", 7)):
        await twitch.send_event("channel.raid", raid_event(streamer, name, viewers))
    await eventually(lambda: len(cog.recent.latest(h.guild.id, 5)) == 2)
    h.generator.replies = answers_with("twitch_recent_events", count=5)
    text = await h.final(await h.ask("robot, who raided us lately?"))
    lines = text.split("Here is what Twitch says: ", 1)[1].splitlines()
    assert lines == [
        "The last 2 events on twitch.tv/streamer seen in this server, newest first:",
        "- just now (raid): bob raided the channel with 7 viewers",
        "- just now (raid): alice raided the channel with 42 viewers",
    ]
    assert [e.user_name for e in cog.recent.latest(None, 5)] == ["bob", "alice", "unseen"]
    # The Cog took its connection away from the tools when it unloaded.
    host = h.bot.host
    await h.stop()
    result = await call(twitch_recent_events, context(host, h.guild.id))
    assert result.error and "not running in this bot" in result.content
