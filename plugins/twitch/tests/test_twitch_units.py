"""Unit tests: configuration, event sentences, chattiness, the activity log and its
context provider (which also passes the core's ContextProvider contract)."""

from __future__ import annotations

import pytest
from fake_twitch import (
    FakeUser,
    chat_event,
    cheer_event,
    follow_event,
    gift_event,
    raid_event,
    resub_event,
    subscribe_event,
)
from hark_twitch import ActivityLog, TwitchActivityContext, parse_notification
from hark_twitch.events import comments_on
from twitch_support import config_from, settings_from

from hark import ContextRequest
from hark.testing.contracts import ContextProviderContract

CHANNEL = FakeUser("1", "streamer", "Streamer")


def notification(type_: str, event: dict, message_id: str = "m1") -> dict:
    return {
        "metadata": {
            "message_id": message_id,
            "message_type": "notification",
            "subscription_type": type_,
            "subscription_version": "1",
        },
        "payload": {"subscription": {"type": type_}, "event": event},
    }


# -- configuration -------------------------------------------------------------


def test_config_from_env_and_whats_missing():
    config = config_from({"TWITCH_CHANNEL": "#SomeStreamer"})
    assert config.settings.twitch_channel == "somestreamer"
    assert config.missing() == ["TWITCH_CLIENT_ID", "TWITCH_ACCESS_TOKEN"]
    assert not config.configured
    full = config_from(
        {
            "TWITCH_CLIENT_ID": "cid",
            "TWITCH_ACCESS_TOKEN": "oauth:abcdef123456",
            "TWITCH_CHANNEL": "s",
            "TWITCH_API_BASE": "http://127.0.0.1:1/helix",
            "TWITCH_CHAT_REPLIES": "yes",
            "TWITCH_CALLSIGNS": "robot, hey bot",
        }
    )
    assert full.configured and full.access_token == "abcdef123456"
    settings = full.settings
    assert settings.api_base == "http://127.0.0.1:1/helix/"  # twitchAPI joins paths onto it
    assert settings.eventsub_url == "wss://eventsub.wss.twitch.tv/ws"
    assert settings.auth_base == "https://id.twitch.tv/oauth2/"
    assert settings.callsigns == ("robot", "hey bot") and settings.chat_replies
    assert "user:write:chat" in full.required_scopes()
    assert "abcdef123456" not in repr(full)
    assert not full.can_refresh


def test_twitchapi_and_aiohttp_errors_become_hark_errors_naming_the_request():
    from hark_twitch.helix import FatalTwitchError, Helix
    from twitchAPI.type import (
        EventSubSubscriptionConflict,
        ForbiddenError,
        InvalidRefreshTokenException,
        TwitchBackendException,
        UnauthorizedException,
    )

    from hark import ProviderConnectionError, ProviderStatusError, ProviderTimeoutError

    token = "abcdef123456"
    helix = Helix(
        config_from(
            {"TWITCH_CLIENT_ID": "cid", "TWITCH_ACCESS_TOKEN": token, "TWITCH_CHANNEL": "s"}
        )
    )

    def check(exc: BaseException, kind: type, message: str, status: int | None = None):
        error = helix.translate(exc, "the chat message")
        assert type(error) is kind and error.message == message and error.provider == "twitch"
        assert getattr(error, "status", None) == status
        return error

    check(ForbiddenError("x"), ProviderStatusError, "Twitch refused the chat message", 403)
    check(
        EventSubSubscriptionConflict("x"),
        ProviderStatusError,
        "the chat message already exists",
        409,
    )
    error = check(
        TwitchBackendException("x"),
        ProviderStatusError,
        "Twitch returned an error (the chat message)",
        503,
    )
    assert error.retryable
    check(
        UnauthorizedException("x"),
        ProviderStatusError,
        "Twitch rejected the API key (HTTP 401); check TWITCH_ACCESS_TOKEN (the chat message)",
        401,
    )
    check(
        InvalidRefreshTokenException("x"),
        FatalTwitchError,
        "TWITCH_REFRESH_TOKEN was rejected by Twitch; authorize the bot again",
    )
    timeout = "Twitch did not answer within 15s (the chat message)"  # request_timeout
    check(TimeoutError(), ProviderTimeoutError, timeout)
    check(
        ConnectionRefusedError(),
        ProviderConnectionError,
        "could not connect to Twitch (the chat message)",
    )
    assert helix.translate(ValueError(token), "x").message == "unexpected ValueError during x"
    # What Twitch says is quoted without the token.
    failure = helix.errors.failure(400, {"status": 400, "message": f"bad token {token}"})
    error = helix.status_error(failure, "token validation")
    assert error.message == "Twitch refused token validation: bad token ***"
    failure = helix.errors.failure(500, {"status": 500, "message": f"oops {token}"})
    error = helix.status_error(failure, "token validation")
    assert error.message == "Twitch returned an error: oops *** (token validation)"


def test_values_the_model_refuses_fall_back_to_the_default():
    assert settings_from({"TWITCH_CHAT_RATE": "5/10"}).chat_rate == "5/10"
    assert settings_from({"TWITCH_CHAT_RATE": "0"}).chat_rate == "0"  # no limit
    assert settings_from({"TWITCH_CHAT_RATE": "lots"}).chat_rate == "3/60"
    assert settings_from({"TWITCH_BACKOFF_BASE": "soon"}).backoff_base == 1.0
    # As before, tiny backoffs are raised to 10 ms rather than refused.
    assert settings_from({"TWITCH_BACKOFF_BASE": "0"}).backoff_base == 0.01
    assert settings_from({"TWITCH_CHAT_REPLIES": "maybe"}).chat_replies is False


# -- event sentences -----------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "event", "kind", "text"),
    [
        (
            "channel.raid",
            raid_event(CHANNEL, "alice", 42),
            "raid",
            "alice raided the channel with 42 viewers",
        ),
        (
            "channel.raid",
            raid_event(CHANNEL, "solo", 1),
            "raid",
            "solo raided the channel with 1 viewer",
        ),
        ("channel.follow", follow_event(CHANNEL, "bob"), "follow", "bob followed the channel"),
        (
            "channel.subscribe",
            subscribe_event(CHANNEL, "cy", tier="3000"),
            "subscribe",
            "cy subscribed at Tier 3",
        ),
        (
            "channel.subscription.message",
            resub_event(CHANNEL, "di", months=12, text="a year!"),
            "resub",
            'di resubscribed at Tier 1 for 12 months: "a year!"',
        ),
        (
            "channel.subscription.gift",
            gift_event(CHANNEL, "ed", total=3, cumulative_total=40),
            "gift",
            "ed gifted 3 Tier 1 subs (40 gifted in total)",
        ),
        (
            "channel.subscription.gift",
            gift_event(CHANNEL, None, total=1),
            "gift",
            "an anonymous viewer gifted 1 Tier 1 sub",
        ),
        (
            "channel.cheer",
            cheer_event(CHANNEL, None, 1),
            "cheer",
            "an anonymous viewer cheered 1 bit",
        ),
        (
            "channel.chat.message",
            chat_event(CHANNEL, "fi", "  hello\nthere  "),
            "chat",
            'fi in chat: "hello there"',
        ),
    ],
)
def test_notifications_become_sentences(type_, event, kind, text):
    parsed = parse_notification(notification(type_, event))
    assert parsed is not None
    assert (parsed.kind, parsed.text) == (kind, text)
    assert parsed.description == f"Twitch: {text}"
    assert parsed.message_id == "m1"


def test_chat_event_keeps_what_was_said_and_ids():
    event = chat_event(CHANNEL, "gil", "robot hi", message_id="chat-1")
    parsed = parse_notification(notification("channel.chat.message", event))
    assert parsed.chat_text == "robot hi" and parsed.chat_message_id == "chat-1"
    assert parsed.user_id == event["chatter_user_id"] and parsed.user_name == "gil"


def test_gifted_subs_unknown_types_and_garbage_are_skipped():
    gifted = subscribe_event(CHANNEL, "x", is_gift=True)
    assert parse_notification(notification("channel.subscribe", gifted)) is None
    assert parse_notification(notification("channel.ban", {"user_name": "x"})) is None
    assert parse_notification({"metadata": {}, "payload": {}}) is None
    assert parse_notification({}) is None


def test_long_messages_are_shortened():
    parsed = parse_notification(
        notification("channel.cheer", cheer_event(CHANNEL, "h", 5, text="a" * 500))
    )
    assert len(parsed.text) < 260 and parsed.text.endswith('…"')


def test_chattiness_levels():
    assert not any(comments_on("off", k) for k in ("raid", "gift", "follow"))
    assert comments_on("low", "raid") and comments_on("low", "gift")
    assert not comments_on("low", "cheer") and not comments_on("low", "follow")
    assert comments_on("normal", "cheer") and comments_on("normal", "resub")
    assert not comments_on("normal", "follow") and comments_on("high", "follow")
    assert not comments_on("high", "chat")  # chat is context, never a comment
    assert not comments_on("bogus", "raid")


# -- the activity log and its context provider -----------------------------------


def make_event(text: str, at: float, message_id: str = ""):
    parsed = parse_notification(
        notification("channel.follow", follow_event(CHANNEL, text), message_id)
    )
    parsed.at = at
    return parsed


def test_activity_log_is_bounded_and_windowed():
    now = [1000.0]
    log = ActivityLog(max_events=3, window=300, clock=lambda: now[0])
    assert log.render() is None
    for i, at in enumerate([500.0, 800.0, 900.0, 950.0, 990.0]):
        log.add(make_event(f"u{i}", at))
    # Bounded to 3, and u1 (200 s old) is inside the window; u0 fell out of the deque.
    assert [e.user_name for e in log.recent()] == ["u2", "u3", "u4"]
    now[0] = 1250.0  # u2 is now 350 s old
    assert [e.user_name for e in log.recent()] == ["u3", "u4"]
    text = log.render()
    assert text.splitlines()[1:] == [
        "- 5 min ago: u3 followed the channel",
        "- 4 min ago: u4 followed the channel",
    ]


async def test_context_part_is_one_system_message_at_order_40():
    provider = TwitchActivityContext(ActivityLog())
    assert await provider.provide(ContextRequest(text="hi")) is None
    provider.activity.channel = "streamer"
    import time

    provider.activity.add(make_event("ann", time.time(), "e1"))
    provider.activity.add(make_event("ben", time.time(), "e2"))
    part = await provider.provide(ContextRequest(text="who followed?", guild_id=1))
    assert part.order == 40 and len(part.messages) == 1
    message = part.messages[0]
    assert message.role == "system"
    assert message.content.startswith("Recent Twitch activity on twitch.tv/streamer")
    assert "- just now: ann followed the channel" in message.content
    # A commentary turn about e2 does not get e2 twice.
    part = await provider.provide(
        ContextRequest(text="Twitch: ben followed", kind="event", extra={"twitch_message_id": "e2"})
    )
    assert "ben" not in part.messages[0].content and "ann" in part.messages[0].content


class TestActivityContract(ContextProviderContract):
    @pytest.fixture
    def context_provider(self):
        import time

        provider = TwitchActivityContext()
        provider.activity.add(make_event("zed", time.time(), "c1"))
        return provider
