"""The loopback Twitch itself, driven with plain aiohttp: it must speak the documented
protocol, or the plugin's other tests prove nothing."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from fake_twitch import FakeTwitch, raid_event
from twitch_support import CHANNEL, TOKEN

pytestmark = pytest.mark.timeout(30)


def helix_headers(twitch: FakeTwitch, token: str = TOKEN) -> dict[str, str]:
    return {"Client-Id": twitch.client_id, "Authorization": f"Bearer {token}"}


async def welcome(ws: aiohttp.ClientWebSocketResponse) -> dict:
    message = await ws.receive_json(timeout=5)
    assert message["metadata"]["message_type"] == "session_welcome"
    return message["payload"]["session"]


async def subscribe(http, twitch, session_id: str, type_="channel.raid", version="1", **cond):
    streamer = twitch.user(CHANNEL)
    condition = cond or {"to_broadcaster_user_id": streamer.id}
    return await http.post(
        twitch.api_base + "eventsub/subscriptions",
        headers=helix_headers(twitch),
        json={
            "type": type_,
            "version": version,
            "condition": condition,
            "transport": {"method": "websocket", "session_id": session_id},
        },
    )


async def test_welcome_keepalive_and_notification_shapes():
    async with FakeTwitch(keepalive=1) as twitch, aiohttp.ClientSession() as http:
        twitch.add_user(CHANNEL)
        twitch.add_token(TOKEN, CHANNEL)
        async with http.ws_connect(twitch.eventsub_url) as ws:
            session = await welcome(ws)
            assert session["status"] == "connected"
            assert session["keepalive_timeout_seconds"] == 1
            assert session["reconnect_url"] is None and session["id"]
            response = await subscribe(http, twitch, session["id"])
            assert response.status == 202
            body = await response.json()
            assert body["data"][0]["transport"]["session_id"] == session["id"]
            assert body["data"][0]["status"] == "enabled"

            started = time.monotonic()
            keepalive = await ws.receive_json(timeout=3)
            assert keepalive["metadata"]["message_type"] == "session_keepalive"
            assert keepalive["payload"] == {}
            assert 0.5 < time.monotonic() - started < 2.0

            streamer = twitch.user(CHANNEL)
            assert await twitch.send_event("channel.raid", raid_event(streamer, "a", 3)) == 1
            note = await ws.receive_json(timeout=3)
            assert note["metadata"]["message_type"] == "notification"
            assert note["metadata"]["subscription_type"] == "channel.raid"
            assert note["payload"]["subscription"]["id"] == body["data"][0]["id"]
            assert note["payload"]["event"]["viewers"] == 3


async def test_helix_validation(twitch: FakeTwitch):
    async with aiohttp.ClientSession() as http, http.ws_connect(twitch.eventsub_url) as ws:
        session = await welcome(ws)
        # No token / wrong client id: 401 in Helix's error shape.
        bad = await http.get(twitch.api_base + "users", headers={"Client-Id": "x"})
        assert bad.status == 401
        assert (await bad.json())["error"] == "Unauthorized"
        # Unknown session: 400.
        assert (await subscribe(http, twitch, "no-such-session")).status == 400
        # Fine, then a duplicate: 409.
        assert (await subscribe(http, twitch, session["id"])).status == 202
        assert (await subscribe(http, twitch, session["id"])).status == 409
        # A scope the token lacks: 403.
        twitch.add_token("weak-token-123456", CHANNEL, scopes=[])
        response = await http.post(
            twitch.api_base + "eventsub/subscriptions",
            headers=helix_headers(twitch, "weak-token-123456"),
            json={
                "type": "channel.cheer",
                "version": "1",
                "condition": {"broadcaster_user_id": twitch.user(CHANNEL).id},
                "transport": {"method": "websocket", "session_id": session["id"]},
            },
        )
        assert response.status == 403
        # List and delete.
        listed = await (
            await http.get(
                twitch.api_base + "eventsub/subscriptions", headers=helix_headers(twitch)
            )
        ).json()
        assert [s["type"] for s in listed["data"]] == ["channel.raid"]
        sub_id = listed["data"][0]["id"]
        deleted = await http.delete(
            twitch.api_base + "eventsub/subscriptions",
            params={"id": sub_id},
            headers=helix_headers(twitch),
        )
        assert deleted.status == 204
        assert twitch.active() == []


async def test_users_validate_and_scripted_429(twitch: FakeTwitch):
    async with aiohttp.ClientSession() as http:
        users = await (
            await http.get(
                twitch.api_base + "users", params={"login": CHANNEL}, headers=helix_headers(twitch)
            )
        ).json()
        assert users["data"][0]["login"] == CHANNEL
        valid = await http.get(
            twitch.auth_base + "validate", headers={"Authorization": f"OAuth {TOKEN}"}
        )
        body = await valid.json()
        assert body["login"] == CHANNEL and body["client_id"] == twitch.client_id
        assert "bits:read" in body["scopes"] and body["expires_in"] > 0
        invalid = await http.get(
            twitch.auth_base + "validate", headers={"Authorization": "OAuth nope"}
        )
        assert invalid.status == 401 and (await invalid.json())["status"] == 401

        twitch.fail_next("GET", "/helix/users", 429, retry_after=2)
        limited = await http.get(twitch.api_base + "users", headers=helix_headers(twitch))
        assert limited.status == 429
        assert limited.headers["Retry-After"] == "2"
        assert int(limited.headers["Ratelimit-Reset"]) >= int(time.time())


async def test_streams_and_channels_in_helix_shapes(twitch: FakeTwitch, streamer):
    async def get(http, path: str, params) -> tuple[int, dict]:
        response = await http.get(
            twitch.api_base + path, params=params, headers=helix_headers(twitch)
        )
        return response.status, await response.json()

    async with aiohttp.ClientSession() as http:
        # Offline: no stream; the channel still has its (empty) title and category.
        assert await get(http, "streams", {"user_id": streamer.id}) == (
            200,
            {"data": [], "pagination": {}},
        )
        status, channels = await get(http, "channels", {"broadcaster_id": streamer.id})
        assert status == 200 and channels["data"][0]["broadcaster_login"] == CHANNEL
        assert (channels["data"][0]["title"], channels["data"][0]["game_name"]) == ("", "")
        assert (await get(http, "channels", {}))[0] == 400

        twitch.go_live(CHANNEL, title="Hello", game="Chess", viewers=12)
        _, streams = await get(http, "streams", [("user_login", "Streamer"), ("first", "1")])
        (stream,) = streams["data"]
        assert stream["type"] == "live" and stream["user_id"] == streamer.id
        assert (stream["title"], stream["game_name"], stream["viewer_count"]) == (
            "Hello",
            "Chess",
            12,
        )
        assert stream["started_at"].endswith("Z")
        # The channel's title and category stay after the stream ends.
        twitch.go_offline(CHANNEL)
        assert (await get(http, "streams", {"user_id": streamer.id}))[1]["data"] == []
        _, channels = await get(http, "channels", {"broadcaster_id": streamer.id})
        assert channels["data"][0]["title"] == "Hello"
        unauthorized = await http.get(twitch.api_base + "streams", headers={"Client-Id": "x"})
        assert unauthorized.status == 401


async def test_inbound_traffic_closes_with_4001(twitch: FakeTwitch):
    async with aiohttp.ClientSession() as http, http.ws_connect(twitch.eventsub_url) as ws:
        await welcome(ws)
        await ws.send_str("hello?")
        closing = await ws.receive(timeout=3)
        assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 4001


async def test_unused_connection_closes_with_4003():
    async with (
        FakeTwitch(unused_timeout=0.2) as twitch,
        aiohttp.ClientSession() as http,
        http.ws_connect(twitch.eventsub_url) as ws,
    ):
        await welcome(ws)
        closing = await ws.receive(timeout=3)
        assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 4003


async def test_reconnect_hands_subscriptions_over_after_the_new_welcome(twitch: FakeTwitch):
    streamer = twitch.user(CHANNEL)
    async with aiohttp.ClientSession() as http:
        old_ws = await http.ws_connect(twitch.eventsub_url)
        old = await welcome(old_ws)
        assert (await subscribe(http, twitch, old["id"])).status == 202
        await twitch.send_reconnect()
        message = await old_ws.receive_json(timeout=3)
        assert message["metadata"]["message_type"] == "session_reconnect"
        url = message["payload"]["session"]["reconnect_url"]
        # Until the client connects there, events still go to the old connection.
        await twitch.send_event("channel.raid", raid_event(streamer, "early", 1))
        assert (await old_ws.receive_json(timeout=3))["payload"]["event"]["viewers"] == 1

        new_ws = await http.ws_connect(url)
        new = await welcome(new_ws)
        assert new["id"] != old["id"]
        assert (await twitch.send_event("channel.raid", raid_event(streamer, "late", 2))) == 1
        assert (await new_ws.receive_json(timeout=3))["payload"]["event"]["viewers"] == 2
        # The old connection is closed by Twitch if the client does not close it.
        closing = await old_ws.receive(timeout=3)
        assert closing.type == aiohttp.WSMsgType.CLOSE
        # Moved, not lost: a subscription on the new session, none re-created.
        assert [s["transport"]["session_id"] for s in twitch.active()] == [new["id"]]
        await new_ws.close()
        await old_ws.close()


async def test_missed_reconnect_closes_with_4004():
    async with FakeTwitch(reconnect_grace=0.2) as twitch, aiohttp.ClientSession() as http:
        twitch.add_user(CHANNEL)
        twitch.add_token(TOKEN, CHANNEL)
        async with http.ws_connect(twitch.eventsub_url) as ws:
            session = await welcome(ws)
            await subscribe(http, twitch, session["id"])
            await twitch.send_reconnect()
            assert (await ws.receive_json(timeout=3))["metadata"]["message_type"] == (
                "session_reconnect"
            )
            closing = await ws.receive(timeout=3)
            assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 4004


async def test_revocation_message_shape(twitch: FakeTwitch):
    async with aiohttp.ClientSession() as http, http.ws_connect(twitch.eventsub_url) as ws:
        session = await welcome(ws)
        await subscribe(http, twitch, session["id"])
        assert await twitch.revoke("channel.raid", "user_removed") == 1
        message = await ws.receive_json(timeout=3)
        assert message["metadata"]["message_type"] == "revocation"
        assert message["metadata"]["subscription_type"] == "channel.raid"
        assert message["payload"]["subscription"]["status"] == "user_removed"
        assert twitch.active() == []
        await asyncio.sleep(0)
