"""The dashboard in a real browser: Debian's Chromium driven by Playwright, after one
text turn and one voice turn on the loopback Discord (real discord.py client, voice
with DAVE, real speech from espeak-ng, fake providers).

Checks that the login page refuses without the token, that both turns appear with
their stages (the voice one as a waterfall from the end of speech to the first RTP
packet), that a new turn arrives live over server-sent events, that no configured
secret is in any page, API answer or metric, and that /metrics parses. Saves a
screenshot of the Voice page (its path is printed).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from voice_support import CONFIG, in_voice, plugin, wait_for_post

from hark.config import Secret
from hark.logs import register_environment_secrets
from hark.testing.fakes import FakeSynthesizer, FakeTranscriber
from hark.testing.harness import BotHarness

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "browser-dash-token-0123456789"
FAKE_KEY = "sk-fake-openrouter-key-abcdef0123456789"
FAKE_DISCORD = "fake.discord.bot-token.for-the-dashboard-test"

pytestmark = pytest.mark.slow


async def wait_for_turns(h: BotHarness, kind: str, count: int = 1, timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while sum(t.kind == kind for t in h.bot.metrics.turns) < count:
            await asyncio.sleep(0.05)


async def test_dashboard_in_chromium(tmp_path, speech, monkeypatch):
    playwright_api = pytest.importorskip("playwright.async_api")
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed (scripts/test installs it)")
    monkeypatch.setenv("OPENROUTER_API_KEY", FAKE_KEY)
    monkeypatch.setenv("DISCORD_BOT_TOKEN", FAKE_DISCORD)
    register_environment_secrets()
    config = {
        **CONFIG,
        "edit_interval": 0.05,
        "dashboard": "127.0.0.1:0",
        "dashboard_token": Secret(TOKEN),
        "dashboard_show_text": True,
    }
    transcriber = FakeTranscriber("what time is it")
    synthesizer = FakeSynthesizer(seconds_per_char=0.02)
    async with BotHarness(
        tmp_path / "data", plugins={"v": plugin(transcriber, synthesizer)}, config=config
    ) as h:
        # One text turn, one voice turn; a secret reaches a log line on the way.
        logging.getLogger("hark.provider.v").warning("upstream refused key %s", FAKE_KEY)
        await h.ask("robot tell me a joke")
        await wait_for_turns(h, "text")
        await in_voice(h, h.member)
        await h.server.speak(h.member, speech)
        await wait_for_post(h, "🔊")
        await wait_for_turns(h, "voice")
        voice_turn = next(t for t in h.bot.metrics.turns if t.kind == "voice")
        for stage in ("utterance_end", "turn_end", "transcribed", "first_delta", "first_frame"):
            assert stage in voice_turn.stages, voice_turn.stages
        base = h.bot.dashboard.url.rstrip("/")
        secrets = [FAKE_KEY, FAKE_DISCORD, TOKEN, h.server.bot_token]
        bodies: dict[str, str] = {}

        async with playwright_api.async_playwright() as p:
            browser = await p.chromium.launch_persistent_context(
                str(tmp_path / "profile"),  # a fresh --user-data-dir
                executable_path=CHROMIUM,
                headless=True,
                args=ARGS,
                viewport={"width": 1280, "height": 900},
            )
            try:
                page = browser.pages[0] if browser.pages else await browser.new_page()
                # Without the token: refused, with the login form.
                response = await page.goto(base + "/turns")
                assert response is not None and response.status == 401
                assert await page.locator("input[name=token]").count() == 1
                api = await page.request.get(base + "/api/turns")
                assert api.status == 401
                await page.fill("input[name=token]", "not-the-token")
                await page.click("button[type=submit]")
                assert "not right" in await page.content()
                await page.fill("input[name=token]", TOKEN)
                await page.click("button[type=submit]")
                await page.wait_for_url(base + "/turns")

                # Both turns, with their stages.
                rows = page.locator("table.turns tbody tr")
                assert await rows.count() == 2
                kinds = [await rows.nth(i).locator("td").nth(1).inner_text() for i in range(2)]
                assert sorted(kinds) == ["text", "voice"]
                voice_row = rows.filter(has_text="voice")
                for stage in ("utterance_end", "turn_end", "transcribed", "first_delta"):
                    assert await voice_row.locator(f'[data-stage="{stage}"]').count() == 1
                assert await voice_row.locator('[data-stage="first_frame"]').count() == 1
                text_row = rows.filter(has_text="tell me a joke")
                assert await text_row.locator('[data-stage="first_delta"]').count() == 1

                # A new turn arrives live (server-sent events), without a reload.
                await page.wait_for_selector("#live.on", timeout=10_000)
                await h.ask("robot one more thing")
                await rows.nth(2).wait_for(timeout=10_000)
                assert await rows.count() == 3
                assert int(await page.locator("body").get_attribute("data-updates") or 0) >= 1

                # The Voice page: the session and the waterfall of its turn.
                await page.goto(base + "/voice")
                session = page.locator("section.session")
                assert await session.count() == 1
                text = await session.inner_text()
                assert "alice" in text and "Lounge" in text
                assert "End-to-end encryption (DAVE)" in text
                assert await session.locator(".waterfall").count() == 1
                labels = await session.locator(".waterfall .stage .name").all_inner_texts()
                assert labels[:3] == ["end of speech", "turn decision", "transcribed"]
                assert "LLM first token" in labels and "first RTP packet" in labels
                shot = tmp_path / "dashboard-voice.png"
                await page.screenshot(path=str(shot), full_page=True)
                print(f"dashboard screenshot: {shot}")
                assert shot.stat().st_size > 10_000

                # No secret anywhere: pages, API answers, metrics.
                for path in ["/", "/plugins", "/voice", "/turns", "/events"]:
                    await page.goto(base + path)
                    bodies[path] = await page.content()
                for path in [
                    "/api/overview",
                    "/api/plugins",
                    "/api/voice",
                    "/api/turns",
                    "/api/events",
                    "/metrics",
                ]:
                    answer = await page.request.get(base + path)
                    assert answer.status == 200, path
                    bodies[path] = await answer.text()
            finally:
                await browser.close()

        for path, body in bodies.items():
            for secret in secrets:
                assert secret not in body, f"{path} shows a configured secret"
        assert "upstream refused key ***" in bodies["/events"]
        families = {f.name for f in text_string_to_metric_families(bodies["/metrics"])}
        assert {"hark_turns", "hark_provider_calls", "hark_voice_sessions"} <= families
