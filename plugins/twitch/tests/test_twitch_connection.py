"""The Twitch connection against the loopback EventSub/Helix/OAuth server: session
life-cycle, reconnects, revocations, scopes, failures and backoff."""

from __future__ import annotations

import asyncio
import logging

import pytest
from fake_twitch import (
    ALL_SCOPES,
    FakeTwitch,
    chat_event,
    cheer_event,
    closed_port,
    follow_event,
    raid_event,
)
from hark_twitch import TwitchConnection
from twitch_support import CHANNEL, REFRESH, TOKEN, config_for, config_from, eventually

ALL_TYPES = {
    "channel.chat.message",
    "channel.follow",
    "channel.subscribe",
    "channel.subscription.message",
    "channel.subscription.gift",
    "channel.cheer",
    "channel.raid",
}


async def connected(connection: TwitchConnection) -> TwitchConnection:
    await connection.wait_connected(10)
    return connection


async def test_connects_validates_and_subscribes_to_every_topic(twitch: FakeTwitch, connect):
    conn = await connected(connect())
    assert conn.state == "connected"
    assert conn.token.login == CHANNEL and conn.broadcaster.login == CHANNEL
    assert set(conn.topics.values()) == {"subscribed"}
    assert {s["type"] for s in twitch.active()} == ALL_TYPES
    (session,) = twitch.live_sessions()
    assert conn.session_id == session.id
    # Every subscription names this session and the documented conditions.
    streamer = twitch.user(CHANNEL)
    by_type = {s["type"]: s for s in twitch.active()}
    assert by_type["channel.raid"]["condition"] == {"to_broadcaster_user_id": streamer.id}
    assert by_type["channel.follow"]["condition"] == {
        "broadcaster_user_id": streamer.id,
        "moderator_user_id": streamer.id,
    }
    assert by_type["channel.chat.message"]["version"] == "1"
    assert by_type["channel.follow"]["version"] == "2"
    # Helix calls carried the client id and the bearer token.
    posts = twitch.requests_to("POST", "/helix/eventsub/subscriptions")
    assert len(posts) == 7
    assert all(r.headers["Client-Id"] == twitch.client_id for r in posts)
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in posts)
    assert twitch.requests_to("GET", "/oauth2/validate")


async def test_events_arrive_as_plain_sentences(twitch: FakeTwitch, streamer, connect):
    conn = await connected(connect())
    await twitch.send_event("channel.raid", raid_event(streamer, "alice", 42))
    await twitch.send_event("channel.follow", follow_event(streamer, "bob"))
    await twitch.send_event("channel.chat.message", chat_event(streamer, "carol", "hi chat!"))
    await eventually(lambda: len(conn.events) == 3)
    assert [e.text for e in conn.events] == [
        "alice raided the channel with 42 viewers",
        "bob followed the channel",
        'carol in chat: "hi chat!"',
    ]
    assert conn.last_event.kind == "chat" and conn.counts["raid"] == 1


async def test_duplicate_notifications_are_dropped(twitch: FakeTwitch, streamer, connect):
    conn = await connected(connect())
    await twitch.send_event("channel.cheer", cheer_event(streamer, "dan", 100), duplicate=True)
    await twitch.send_event("channel.follow", follow_event(streamer, "erin"))
    await eventually(lambda: len(conn.events) == 2)
    await asyncio.sleep(0.1)
    assert [e.kind for e in conn.events] == ["cheer", "follow"]


async def test_reconnect_message_moves_the_session_without_losing_events(
    twitch: FakeTwitch, streamer, connect
):
    conn = await connected(connect())
    old = twitch.live_sessions()[0]
    posts = len(twitch.requests_to("POST", "/helix/eventsub/subscriptions"))

    await twitch.send_reconnect()
    # Sent right after the reconnect message: still on the old connection.
    await twitch.send_event("channel.raid", raid_event(streamer, "during", 5))
    await eventually(lambda: old.moved_to is not None)
    # Sent after the move: on the new connection.
    await twitch.send_event("channel.raid", raid_event(streamer, "after", 7))
    await eventually(lambda: len(conn.events) == 2)
    assert [e.user_name for e in conn.events] == ["during", "after"]

    await eventually(lambda: not old.alive)
    (new,) = twitch.live_sessions()
    assert new.id != old.id and conn.session_id == new.id and conn.moves == 1
    # The old socket was closed only after the new welcome.
    assert new.sent[0]["metadata"]["message_type"] == "session_welcome"
    # Subscriptions moved with the session: nothing was re-created.
    assert len(twitch.requests_to("POST", "/helix/eventsub/subscriptions")) == posts
    assert {s["type"] for s in twitch.active()} == ALL_TYPES
    assert conn.state == "connected" and conn.sessions == 1


async def test_keepalive_timeout_reconnects_with_backoff_and_resubscribes(connect):
    async with FakeTwitch(keepalive=1) as fake:
        fake.add_user(CHANNEL)
        fake.add_token(TOKEN, CHANNEL)
        conn = TwitchConnection(config_for(fake))
        conn.start()
        try:
            await connected(conn)
            first = conn.session_id
            fake.pause_keepalives()  # the socket stays open but goes silent
            await eventually(lambda: conn.state == "reconnecting", timeout=5)
            assert "keepalive" in conn.error
            assert conn.retry_delays and conn.retry_delays[-1] <= 0.05
            fake.resume_keepalives()
            await eventually(lambda: conn.state == "connected", timeout=5)
            assert conn.session_id != first and conn.sessions == 2
            await fake.wait_for_subscriptions()
            assert len(fake.requests_to("POST", "/helix/eventsub/subscriptions")) == 14
        finally:
            await conn.stop()


async def test_lost_connection_reconnects_and_events_keep_coming(
    twitch: FakeTwitch, streamer, connect
):
    conn = await connected(connect())
    await twitch.drop_connections()  # no close frame: the TCP connection just dies
    await eventually(lambda: conn.sessions == 2 and conn.state == "connected")
    await twitch.wait_for_subscriptions()
    await twitch.send_event("channel.raid", raid_event(streamer, "alice", 3))
    await eventually(lambda: len(conn.events) == 1)

    await twitch.drop_connections(code=4000)  # Twitch closing with "internal server error"
    await eventually(lambda: conn.sessions == 3 and conn.state == "connected")


async def test_backoff_grows_while_twitch_is_down():
    port = closed_port()
    config = config_from(
        {
            "TWITCH_CLIENT_ID": "id",
            "TWITCH_ACCESS_TOKEN": TOKEN,
            "TWITCH_CHANNEL": CHANNEL,
            "TWITCH_API_BASE": f"http://127.0.0.1:{port}/helix/",
            "TWITCH_AUTH_BASE": f"http://127.0.0.1:{port}/oauth2/",
            "TWITCH_EVENTSUB_URL": f"ws://127.0.0.1:{port}/ws",
            "TWITCH_BACKOFF_BASE": "0.01",
            "TWITCH_BACKOFF_MAX": "0.08",
        }
    )
    conn = TwitchConnection(config)
    conn.start()
    try:
        await eventually(lambda: len(conn.retry_delays) >= 6)
        assert conn.state == "reconnecting"
        assert "could not connect to Twitch (token validation)" in conn.error
        delays = list(conn.retry_delays)
        # Exponential (with jitter in [0.75, 1]) and capped.
        assert delays[0] <= 0.01 < delays[3]
        assert max(delays) <= 0.08
        assert conn.attempt >= 6
    finally:
        await conn.stop()
    assert conn.state == "stopped"


async def test_revocation_marks_the_topic_and_keeps_the_rest(
    twitch: FakeTwitch, streamer, connect, caplog
):
    conn = await connected(connect())
    caplog.set_level(logging.WARNING, logger="hark_twitch")
    assert await twitch.revoke("channel.cheer", "authorization_revoked") == 1
    await eventually(lambda: conn.topics["cheer"] != "subscribed")
    assert conn.topics["cheer"] == "revoked by Twitch (authorization_revoked)"
    assert "channel.cheer subscription was revoked" in caplog.text
    # The session lives on, and other events still arrive; revoked ones don't.
    await twitch.send_event("channel.cheer", cheer_event(streamer, "x", 5))
    await twitch.send_event("channel.raid", raid_event(streamer, "alice", 9))
    await eventually(lambda: len(conn.events) == 1)
    assert conn.events[0].kind == "raid" and conn.state == "connected"


async def test_missing_scopes_are_named_in_one_line(twitch: FakeTwitch, streamer, caplog):
    twitch.add_token("narrow-token-abcdef", CHANNEL, scopes=["user:read:chat"])
    caplog.set_level(logging.DEBUG)
    conn = TwitchConnection(config_for(twitch, "narrow-token-abcdef"))
    conn.start()
    try:
        await connected(conn)
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1, [r.getMessage() for r in errors]
        line = errors[0].getMessage()
        assert "\n" not in line
        assert line == (
            "Twitch: the Twitch token of streamer is missing the scopes "
            "moderator:read:followers, channel:read:subscriptions, bits:read "
            "(needed for follows, subscriptions, resubs, gift subs, cheers); "
            "authorize it again with them to get those events."
        )
        # What the token allows still works.
        assert conn.topics["chat"] == "subscribed" and conn.topics["raid"] == "subscribed"
        assert conn.topics["cheer"] == "missing scope bits:read"
        assert {s["type"] for s in twitch.active()} == {"channel.chat.message", "channel.raid"}
        # The line is logged once, not on every reconnect.
        await twitch.drop_connections(code=4000)
        await eventually(lambda: conn.sessions == 2 and conn.state == "connected")
        assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1
    finally:
        await conn.stop()


async def test_chat_replies_need_the_write_scope(twitch: FakeTwitch, caplog):
    scopes = [s for s in ALL_SCOPES if s != "user:write:chat"]
    twitch.add_token("no-write-token-abcdef", CHANNEL, scopes=scopes)
    caplog.set_level(logging.ERROR, logger="hark_twitch")
    conn = TwitchConnection(config_for(twitch, "no-write-token-abcdef", TWITCH_CHAT_REPLIES="on"))
    conn.start()
    try:
        await connected(conn)
        assert "missing the scope user:write:chat (needed for chat replies)" in caplog.text
        assert not conn.can_chat
        assert await conn.send_chat("hello") == "not connected to Twitch chat"
        assert twitch.chat_messages == []
    finally:
        await conn.stop()


async def test_invalid_token_is_a_clear_error_and_not_retried(twitch: FakeTwitch, caplog):
    caplog.set_level(logging.DEBUG)
    conn = TwitchConnection(config_for(twitch, "not-a-real-token-xyz"))
    conn.start()
    await eventually(lambda: conn.state == "failed")
    await asyncio.sleep(0.2)
    assert not conn.running
    assert len(twitch.requests_to("GET", "/oauth2/validate")) == 1
    assert conn.error.startswith("TWITCH_ACCESS_TOKEN was rejected by Twitch")
    assert "TWITCH_REFRESH_TOKEN" in conn.error
    assert "not-a-real-token-xyz" not in caplog.text
    await conn.stop()


async def test_expired_token_is_refreshed(twitch: FakeTwitch, caplog):
    twitch.add_token("expired-token-abcdef", CHANNEL, refresh=REFRESH)
    twitch.expire_token("expired-token-abcdef")
    caplog.set_level(logging.DEBUG)
    config = config_for(
        twitch,
        "expired-token-abcdef",
        TWITCH_REFRESH_TOKEN=REFRESH,
        TWITCH_CLIENT_SECRET=twitch.client_secret,
    )
    conn = TwitchConnection(config)
    conn.start()
    try:
        await connected(conn)
        (refresh,) = twitch.requests_to("POST", "/oauth2/token")
        assert refresh.body["grant_type"] == "refresh_token"
        # Subscriptions were made with the new token.
        post = twitch.requests_to("POST", "/helix/eventsub/subscriptions")[-1]
        new_token = post.headers["Authorization"].removeprefix("Bearer ")
        assert new_token.startswith("refreshed-")
        for secret in (REFRESH, new_token, twitch.client_secret, "expired-token-abcdef"):
            assert secret not in caplog.text
    finally:
        await conn.stop()


async def test_unknown_channel_stops_with_one_line(twitch: FakeTwitch, caplog):
    caplog.set_level(logging.ERROR, logger="hark_twitch")
    conn = TwitchConnection(config_for(twitch, TWITCH_CHANNEL="nobody_here"))
    conn.start()
    await eventually(lambda: conn.state == "failed")
    assert conn.error == "TWITCH_CHANNEL 'nobody_here' is not a Twitch channel"
    assert caplog.text.count("nobody_here") == 1
    await conn.stop()


async def test_token_of_another_app_is_refused(twitch: FakeTwitch):
    twitch.add_token("foreign-token-abcdef", CHANNEL, client_id="someone-else")
    conn = TwitchConnection(config_for(twitch, "foreign-token-abcdef"))
    conn.start()
    await eventually(lambda: conn.state == "failed")
    assert "another application" in conn.error
    await conn.stop()


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_helix_errors_while_subscribing_are_retried(twitch: FakeTwitch, connect, status):
    twitch.fail_next(
        "POST",
        "/helix/eventsub/subscriptions",
        status,
        times=2,
        retry_after=1 if status == 429 else None,
    )
    conn = connect()
    await connected(conn)
    await twitch.wait_for_subscriptions()
    assert set(conn.topics.values()) == {"subscribed"}


async def test_a_bot_account_gets_what_twitch_allows_it(twitch: FakeTwitch):
    """A token of another account (not the broadcaster, not a moderator): Twitch refuses
    follows, subs and cheers (403); chat and raids still work, and status says so."""
    twitch.add_token("bot-account-token-abc", "hark_bot")
    conn = TwitchConnection(config_for(twitch, "bot-account-token-abc"))
    conn.start()
    try:
        await connected(conn)
        assert conn.topics["chat"] == conn.topics["raid"] == "subscribed"
        for key in ("follow", "subscribe", "resub", "gift", "cheer"):
            assert conn.topics[key] == "refused by Twitch", key
        # As a moderator the follow subscription is accepted on the next session.
        twitch.add_moderator(CHANNEL, "hark_bot")
        await twitch.drop_connections(code=4000)
        await eventually(lambda: conn.sessions == 2 and conn.state == "connected")
        assert conn.topics["follow"] == "subscribed"
    finally:
        await conn.stop()


async def test_a_transient_refusal_is_asked_again(twitch: FakeTwitch, connect):
    twitch.fail_next("POST", "/helix/eventsub/subscriptions", 403, message="nope")
    conn = await connected(connect())
    assert set(conn.topics.values()) == {"subscribed"}


async def test_welcome_timeout_and_refused_websocket_are_retried(twitch: FakeTwitch, connect):
    twitch.refuse_websocket = True
    conn = connect()
    await eventually(lambda: conn.attempt >= 2)
    assert "refused the connection (HTTP 503)" in conn.error
    twitch.refuse_websocket = False
    await connected(conn)


async def test_unused_connection_closed_by_twitch_is_retried():
    # A token that can subscribe to nothing: Twitch closes the connection with 4003.
    async with FakeTwitch(unused_timeout=0.3) as fake:
        fake.add_user(CHANNEL)
        fake.add_token(TOKEN, CHANNEL, scopes=[])
        fake.refuse_types["channel.raid"] = 403
        conn = TwitchConnection(config_for(fake))
        conn.start()
        try:
            await eventually(lambda: conn.error and "4003" in conn.error)
            assert "connection unused" in conn.error
            assert conn.topics["raid"] == "refused by Twitch"
            del fake.refuse_types["channel.raid"]
            await connected(conn)  # the next try subscribes to raids
        finally:
            await conn.stop()


async def test_stop_is_prompt_and_idempotent(twitch: FakeTwitch, connect):
    conn = await connected(connect())
    async with asyncio.timeout(2):
        await conn.stop()
        await conn.stop()
    assert conn.state == "stopped" and not conn.running
    await eventually(lambda: not twitch.live_sessions())


async def test_no_secret_in_logs_at_debug(twitch: FakeTwitch, streamer, caplog, connect):
    caplog.set_level(logging.DEBUG)
    conn = await connected(connect())
    await twitch.send_event("channel.raid", raid_event(streamer, "alice", 2))
    await eventually(lambda: conn.events)
    await twitch.drop_connections()
    await eventually(lambda: conn.sessions == 2)
    assert TOKEN not in caplog.text
    assert TOKEN not in repr(conn.config)


async def test_token_is_revalidated_while_connected(twitch: FakeTwitch, connect):
    conn = connect()
    conn.validate_every = 0.1
    await connected(conn)
    await eventually(lambda: len(twitch.requests_to("GET", "/oauth2/validate")) >= 3)
    assert conn.state == "connected"
    # Revoked by the user: the next validation stops the connection with one clear line.
    twitch.expire_token(TOKEN)
    await eventually(lambda: conn.state == "failed")
    assert conn.error.startswith("TWITCH_ACCESS_TOKEN was rejected by Twitch")
    assert not conn.running


async def test_refresh_while_connected_reaches_the_helix_client(twitch: FakeTwitch, streamer):
    twitch.add_token("short-lived-token-abc", CHANNEL, refresh=REFRESH)
    config = config_for(
        twitch,
        "short-lived-token-abc",
        TWITCH_REFRESH_TOKEN=REFRESH,
        TWITCH_CLIENT_SECRET=twitch.client_secret,
    )
    conn = TwitchConnection(config)
    conn.validate_every = 0.1
    conn.start()
    try:
        await connected(conn)
        twitch.expire_token("short-lived-token-abc")
        await twitch.wait_for(lambda: twitch.requests_to("POST", "/oauth2/token"))
        await asyncio.sleep(0.2)
        assert conn.state == "connected"
        assert await conn.send_chat("still here") is None
        (sent,) = twitch.chat_messages
        assert sent["message"] == "still here"
        auth = twitch.requests_to("POST", "/helix/chat/messages")[-1].headers["Authorization"]
        assert auth.startswith("Bearer refreshed-")
    finally:
        await conn.stop()


async def test_channel_id_skips_the_user_lookup(twitch: FakeTwitch, streamer):
    conn = TwitchConnection(config_for(twitch, TWITCH_CHANNEL_ID=streamer.id))
    conn.start()
    try:
        await connected(conn)
        assert twitch.requests_to("GET", "/helix/users") == []
        assert conn.broadcaster.id == streamer.id
        assert set(conn.topics.values()) == {"subscribed"}
    finally:
        await conn.stop()
