"""The fake REST API on its own (plain aiohttp): errors, validation, pagination, faults."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from hark.testing.discord import FakeDiscord

World = Any  # fixture type, defined in conftest.py

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def http(server: FakeDiscord) -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"Authorization": f"Bot {server.bot_token}"}
    async with aiohttp.ClientSession(base_url=server.http_base, headers=headers) as session:
        yield session


async def call(
    http: aiohttp.ClientSession, method: str, path: str, **kwargs: Any
) -> tuple[int, Any, Any]:
    async with http.request(method, "/api/v10" + path, **kwargs) as response:
        body = await response.json() if response.content_type == "application/json" else None
        return response.status, body, response.headers


async def test_auth_unknown_routes_and_headers(
    server: FakeDiscord, http: aiohttp.ClientSession
) -> None:
    status, body, headers = await call(http, "GET", "/users/@me")
    assert status == 200 and body["id"] == str(server.bot_user.id) and body["bot"] is True
    assert headers["Content-Type"] == "application/json"
    assert int(headers["X-RateLimit-Remaining"]) > 0 and headers["X-RateLimit-Bucket"]

    status, body, _ = await call(http, "GET", "/users/@me", headers={"Authorization": "Bot nope"})
    assert (status, body) == (401, {"message": "401: Unauthorized", "code": 0})

    status, body, _ = await call(http, "GET", "/guilds/1/emojis/does-not-exist")
    assert (status, body) == (404, {"message": "404: Not Found", "code": 0})
    assert server.unhandled_routes == ["GET /api/v10/guilds/1/emojis/does-not-exist"]

    status, body, _ = await call(http, "GET", "/gateway/bot")
    assert body["url"] == server.gateway_url and body["shards"] == 1
    assert body["session_start_limit"]["max_concurrency"] == 1


async def test_message_validation_and_pagination(
    server: FakeDiscord, world: World, http: aiohttp.ClientSession
) -> None:
    path = f"/channels/{world.text.id}/messages"
    status, body, _ = await call(http, "POST", path, json={"content": "x" * 2001})
    assert status == 400 and body["code"] == 50035
    assert body["errors"]["content"]["_errors"][0]["code"] == "BASE_TYPE_MAX_LENGTH"
    status, body, _ = await call(http, "POST", path, json={"embeds": [{"title": "t" * 257}]})
    assert status == 400 and "embeds" in body["errors"]
    status, body, _ = await call(
        http,
        "POST",
        path,
        json={"content": "hi", "allowed_mentions": {"parse": ["users"], "users": ["1"]}},
    )
    assert status == 400 and body["code"] == 50035

    ids = []
    for n in range(120):
        status, body, _ = await call(http, "POST", path, json={"content": str(n)})
        assert status == 200
        ids.append(int(body["id"]))
    status, page, _ = await call(http, "GET", path, params={"limit": "100"})
    assert [m["content"] for m in page[:2]] == ["119", "118"] and len(page) == 100
    status, page, _ = await call(http, "GET", path, params={"before": str(ids[10]), "limit": "5"})
    assert [m["content"] for m in page] == ["9", "8", "7", "6", "5"]
    status, page, _ = await call(http, "GET", path, params={"after": str(ids[115])})
    assert [m["content"] for m in page] == ["119", "118", "117", "116"]
    status, page, _ = await call(http, "GET", path, params={"around": str(ids[50]), "limit": "3"})
    assert sorted(m["content"] for m in page) == ["49", "50", "51"]

    status, body, _ = await call(http, "DELETE", f"{path}/{ids[0]}")
    assert status == 204
    status, body, _ = await call(http, "GET", f"{path}/{ids[0]}")
    assert (status, body["code"]) == (404, 10008)


async def test_multipart_upload_and_edit_keeps_attachments(
    server: FakeDiscord, world: World, http: aiohttp.ClientSession
) -> None:
    form = aiohttp.FormData(quote_fields=False)
    form.add_field(
        "payload_json", '{"content": "files", "attachments": [{"id": 0, "description": "d"}]}'
    )
    form.add_field("files[0]", b"\x00\x01binary", filename="a b.bin")
    form.add_field("files[1]", b"second", filename="b.txt", content_type="text/plain")
    path = f"/channels/{world.text.id}/messages"
    status, body, _ = await call(http, "POST", path, data=form)
    assert status == 200 and [a["filename"] for a in body["attachments"]] == ["a b.bin", "b.txt"]
    first = body["attachments"][0]
    assert first["description"] == "d" and first["size"] == 8
    async with http.get(first["url"]) as response:
        assert await response.read() == b"\x00\x01binary"

    status, edited, _ = await call(
        http,
        "PATCH",
        f"{path}/{body['id']}",
        json={"content": "one left", "attachments": [{"id": first["id"]}]},
    )
    assert status == 200 and [a["id"] for a in edited["attachments"]] == [first["id"]]
    record = server.messages(world.text)[0]
    assert record.edits == ["files"] and record.content == "one left"


async def test_command_validation_and_ids(
    server: FakeDiscord, world: World, http: aiohttp.ClientSession
) -> None:
    path = f"/applications/{server.application_id}/commands"
    bad = [{"name": "Bad Name", "description": "x", "type": 1}]
    status, body, _ = await call(http, "PUT", path, json=bad)
    assert status == 400 and body["code"] == 50035
    unordered = [
        {
            "name": "cmd",
            "description": "x",
            "options": [
                {"type": 3, "name": "a", "description": "a"},
                {"type": 3, "name": "b", "description": "b", "required": True},
            ],
        }
    ]
    status, body, _ = await call(http, "PUT", path, json=unordered)
    assert status == 400

    good = [{"name": "ping", "description": "Ping", "type": 1}]
    status, first, _ = await call(http, "PUT", path, json=good)
    status, second, _ = await call(http, "PUT", path, json=good)
    assert first[0]["id"] == second[0]["id"] and first[0]["version"] == second[0]["version"]
    status, created, _ = await call(http, "POST", path, json={"name": "pong", "description": "P"})
    assert status == 201
    status, listing, _ = await call(http, "GET", path)
    assert sorted(c["name"] for c in listing) == ["ping", "pong"]
    status, _, _ = await call(http, "DELETE", f"{path}/{created['id']}")
    assert status == 204 and [c.name for c in server.commands(world.guild)] == ["ping"]


async def test_fault_injection_5xx(
    server: FakeDiscord, world: World, http: aiohttp.ClientSession
) -> None:
    rule = server.fail_next("GET", r"^/users/@me$", 502, times=2)
    assert (await call(http, "GET", "/users/@me"))[0] == 502
    assert (await call(http, "GET", "/users/@me"))[0] == 502
    assert (await call(http, "GET", "/users/@me"))[0] == 200
    assert rule.remaining == 0
    assert [r.status for r in server.requests] == [502, 502, 200]
