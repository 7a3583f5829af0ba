"""The operator dashboard served by the real bot (loopback Discord), over HTTP.

Login and refusal, the JSON API, the live stream, /metrics, and that no configured
secret leaves in any page, API answer or metric. The same pages in a real browser,
with a voice turn: core/tests/voice/test_dashboard_browser.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hark.config import Secret
from hark.logs import register_environment_secrets
from hark.testing.fakes import EchoGenerator, fake_plugin
from hark.testing.harness import BotHarness

CHAT = {"trigger_names": ["robot"], "edit_interval": 0.05, "rate_limit": "0"}
TOKEN = "dash-token-for-tests-0123456789"
FAKE_KEY = "sk-or-fake-api-key-9876543210abcdef"
PAGES = ["/", "/plugins", "/voice", "/turns", "/events"]
API = ["/api/overview", "/api/plugins", "/api/voice", "/api/turns", "/api/events"]


def harness(tmp_path, **config) -> BotHarness:
    settings = {**CHAT, "dashboard": "127.0.0.1:0", **config}
    return BotHarness(tmp_path, plugins={"fake_llm": fake_plugin(EchoGenerator())}, config=settings)


def url(h: BotHarness, path: str) -> str:
    return h.bot.dashboard.url.rstrip("/") + path


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def text_turn(h: BotHarness, text: str = "robot hello there") -> None:
    count = len(h.bot.metrics.turns)
    await h.ask(text)
    async with asyncio.timeout(5):
        while len(h.bot.metrics.turns) == count:
            await asyncio.sleep(0.02)


async def test_off_by_default(tmp_path):
    async with BotHarness(tmp_path, plugins={"fake_llm": fake_plugin(EchoGenerator())}) as h:
        assert h.bot.dashboard is None
        assert h.bot.metrics is h.bot.runtime.conversation.metrics


async def test_a_generated_token_is_printed_once_and_never_logged(tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    async with harness(tmp_path) as h:
        token = h.bot.dashboard._token
        out = capsys.readouterr().out
        assert out.count(token) == 1 and "login token" in out
        assert h.bot.dashboard.url.startswith("http://127.0.0.1:")
        logging.getLogger("hark.test").warning("someone pasted %s", token)
        async with (
            aiohttp.ClientSession() as session,
            session.get(url(h, "/api/overview"), headers=bearer(token)) as r,
        ):
            assert r.status == 200
        events = json.dumps([e.as_dict() for e in h.bot.metrics.recent_events()])
        assert "someone pasted ***" in events and token not in events
    assert token not in "\n".join(r.getMessage() for r in caplog.records if r.name != "hark.test")


async def test_without_the_token_everything_is_refused(tmp_path):
    async with (
        harness(tmp_path, dashboard_token=Secret(TOKEN)) as h,
        aiohttp.ClientSession() as session,
    ):
        for path in [*PAGES, *API, "/api/stream", "/metrics"]:
            async with session.get(url(h, path)) as r:
                assert r.status == 401, path
                body = await r.text()
            if path.startswith("/api") or path == "/metrics":
                assert "unauthorized" in body and r.headers["WWW-Authenticate"]
            else:
                assert 'name="token"' in body  # the login form
            async with session.get(url(h, path), headers=bearer("wrong-token")) as r:
                assert r.status == 401, path
        # Nothing to change: the dashboard is read-only.
        async with session.post(url(h, "/api/turns"), headers=bearer()) as r:
            assert r.status == 405


async def test_logging_in_sets_a_cookie_that_is_not_the_token(tmp_path):
    # unsafe: the jar keeps cookies of an IP address (127.0.0.1) too.
    jar = aiohttp.CookieJar(unsafe=True)
    async with (
        harness(tmp_path, dashboard_token=Secret(TOKEN)) as h,
        aiohttp.ClientSession(cookie_jar=jar) as session,
    ):
        login = url(h, "/login")
        async with session.post(login, data={"token": "nope", "next": "/turns"}) as r:
            assert r.status == 401 and "not right" in await r.text()
        async with session.post(
            login, data={"token": TOKEN, "next": "//evil.example/"}, allow_redirects=False
        ) as r:
            assert r.status == 303 and r.headers["Location"] == "/"
            cookie = r.cookies["hark_dashboard"]
            assert cookie.value and TOKEN not in cookie.value and cookie["httponly"]
        async with session.get(url(h, "/turns")) as r:
            assert r.status == 200 and "<h1>Turns</h1>" in await r.text()
            assert r.headers["Cache-Control"] == "no-store"
        async with session.get(url(h, "/logout")) as r:
            assert r.url.path == "/login" and 'name="token"' in await r.text()
        async with session.get(url(h, "/api/turns")) as r:
            assert r.status == 401


async def test_turns_api_and_live_stream(tmp_path):
    async with (
        harness(tmp_path, dashboard_token=Secret(TOKEN)) as h,
        aiohttp.ClientSession(headers=bearer()) as session,
    ):
        stream = await session.get(url(h, "/api/stream"))
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        assert (await stream.content.readline()).startswith(b"retry:")
        await text_turn(h, "robot what is the weather")

        async def next_turn() -> dict:
            event = None
            async for raw in stream.content:
                line = raw.decode().strip()
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event == "turn":
                    return json.loads(line.split(":", 1)[1])
            raise AssertionError("stream ended")

        live = await asyncio.wait_for(next_turn(), 5)
        stream.close()
        assert live["kind"] == "text" and live["outcome"] == "delivered"
        async with session.get(url(h, "/api/turns")) as r:
            turns = (await r.json())["turns"]
        assert [t["id"] for t in turns] == [live["id"]]
        turn = turns[0]
        assert turn["guild"] == "Test Server" and turn["channel"] == "#general"
        assert turn["provider"] == "fake_llm"
        assert 0 <= turn["first_token_s"] <= turn["total_s"]
        assert set(turn["stages"]) == {"start", "first_delta", "reply_done"}
        # Message text is hidden unless the operator turns it on.
        assert turn["request_text"] is None and turn["reply_text"] is None
        async with session.get(url(h, "/api/overview")) as r:
            overview = await r.json()
        assert overview["connected"] and overview["turns"]["total"] == 1
        assert [g["name"] for g in overview["guilds"]] == ["Test Server"]
        async with session.get(url(h, "/api/plugins")) as r:
            plugins = await r.json()
        server = plugins["servers"][0]
        assert server["providers"]["generate"]["provider"] == "fake_llm"
        stats = {p["id"]: p for p in plugins["providers"]}
        assert stats["fake_llm"]["calls"] == 1 and stats["fake_llm"]["p50_s"] is not None


async def test_metrics_parse_with_prometheus_client(tmp_path):
    async with harness(tmp_path, dashboard_token=Secret(TOKEN)) as h:
        await text_turn(h)
        async with (
            aiohttp.ClientSession(headers=bearer()) as session,
            session.get(url(h, "/metrics")) as r,
        ):
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
            text = await r.text()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert families["hark_connected"].samples[0].value == 1
        turns = {
            (s.labels["kind"], s.labels["outcome"]): s.value
            for s in families["hark_turns"].samples
            if s.name == "hark_turns_total"
        }
        assert turns == {("text", "delivered"): 1}
        calls = [s for s in families["hark_provider_calls"].samples if s.name.endswith("_total")]
        assert any(s.labels["provider"] == "fake_llm" and s.value == 1 for s in calls)
        assert "hark_process_resident_memory_bytes" in families
        assert "hark_event_loop_lag_seconds" in families


async def test_no_configured_secret_leaves(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENROUTER_API_KEY", FAKE_KEY)
    register_environment_secrets()
    async with harness(tmp_path, dashboard_token=Secret(TOKEN), dashboard_show_text=True) as h:
        # A secret that reaches a log line, a plugin error and a message all the same.
        logging.getLogger("hark.provider.fake_llm").warning("upstream refused key %s", FAKE_KEY)
        h.bot.runtime.manager.plugins["fake_llm"].error = f"bad key {FAKE_KEY}"
        await text_turn(h, f"robot my key is {FAKE_KEY}")
        secrets = [FAKE_KEY, TOKEN, h.server.bot_token]
        async with aiohttp.ClientSession(headers=bearer()) as session:
            bodies = {}
            for path in [*PAGES, *API, "/metrics", "/login"]:
                async with session.get(url(h, path)) as r:
                    assert r.status == 200, path
                    bodies[path] = await r.text()
        for path, body in bodies.items():
            for secret in secrets:
                assert secret not in body, f"{path} shows a secret"
        assert "my key is ***" in bodies["/api/turns"]  # shown, redacted
        assert "upstream refused key ***" in bodies["/api/events"]


async def test_a_taken_port_leaves_the_bot_running(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with harness(tmp_path, dashboard=f"127.0.0.1:{port}") as h:
            assert h.bot.dashboard is None
            assert any(
                "could not serve the dashboard" in e.message for e in h.bot.metrics.recent_events()
            )
            await text_turn(h)


@pytest.mark.parametrize("path", ["/static/dashboard.js", "/static/dashboard.css"])
async def test_script_and_style_are_served_without_login(tmp_path, path):
    async with (
        harness(tmp_path) as h,
        aiohttp.ClientSession() as session,
        session.get(url(h, path)) as r,
    ):
        assert r.status == 200 and len(await r.read()) > 100
