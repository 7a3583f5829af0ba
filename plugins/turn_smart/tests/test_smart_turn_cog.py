"""``!smartturn`` end to end: the real bot on the loopback Discord server."""

from __future__ import annotations

import hark_turn_smart
import pytest
from hark_turn_smart import SmartTurnDetector

from hark import Capability
from hark.testing.harness import BotHarness


def detector_of(h: BotHarness) -> SmartTurnDetector:
    (provider,) = [p for p in h.providers("turn_smart") if isinstance(p, SmartTurnDetector)]
    return provider


@pytest.fixture
async def harness(tmp_path):
    async with BotHarness(tmp_path, plugins={"turn_smart": hark_turn_smart}) as h:
        yield h


async def test_it_is_this_servers_turn_detector(harness):
    chosen = harness.bot.control.provider_for(Capability.TURN, harness.guild.id)
    assert chosen is detector_of(harness)
    assert chosen.id == "turn_smart"


async def test_show_lists_this_servers_settings(harness):
    reply = (await harness.ask("!smartturn")).content
    lines = reply.splitlines()
    assert lines[0].startswith("**Smart Turn**")
    assert "In use here: yes." in lines
    assert (
        "`pause_ms` = 200 ms (default) — silence before Smart Turn is asked whether the turn"
        " is complete" in lines
    )
    assert any(line.startswith("`max_wait_ms` = 2000 ms (default)") for line in lines)
    assert any(line.startswith("`threshold` = 0.5 (default)") for line in lines)
    assert any(line.startswith("`min_speech_ms` = the voice setting (default)") for line in lines)
    assert lines[-1] == "Change (Manage Server): `!smartturn set KEY VALUE|reset`."
    # Showing never loads the models (they load when a voice session starts).
    assert not detector_of(harness).loaded


async def test_set_needs_manage_server_and_reaches_the_detector(harness):
    h = harness
    detector = detector_of(h)
    denied = await h.ask("!smartturn set pause_ms 300")
    assert "Manage" in denied.content
    assert detector.config(h.guild.id).pause_ms == 200

    ok = await h.ask("!smartturn set pause_ms 300ms", author=h.admin)
    assert ok.content == "`pause_ms` is now 300 ms here; it applies from the next utterance."
    assert detector.config(h.guild.id).pause_ms == 300
    assert detector.config(h.guild.id + 1).pause_ms == 200  # only this server
    assert "`pause_ms` = 300 ms (set here)" in (await h.ask("!smartturn")).content

    ok = await h.ask("!smartturn set threshold 70%", author=h.admin)
    assert ok.content.startswith("`threshold` is now 0.7 here")
    ok = await h.ask("!smartturn set min_speech_ms 400", author=h.admin)
    voice = {"min_speech_ms": 250, "pre_roll_ms": 300, "max_utterance_ms": 15_000}
    config = detector.config(h.guild.id, voice)
    assert (config.threshold, config.min_speech_ms) == (0.7, 400)

    low = await h.ask("!smartturn set max_wait_ms 250", author=h.admin)
    assert "incomplete turns end at 300 ms" in low.content
    assert detector.config(h.guild.id).max_wait_ms == 300

    bad = await h.ask("!smartturn set threshold 2", author=h.admin)
    assert bad.content == "`threshold` must be from 0 to 1."
    bad = await h.ask("!smartturn set pause_ms soon", author=h.admin)
    assert bad.content == "`pause_ms` takes a number from 60 to 1500."
    unknown = await h.ask("!smartturn set silence_ms 300", author=h.admin)
    assert unknown.content.startswith("There is no setting `silence_ms`; one of: `pause_ms`")

    reset = await h.ask("!smartturn set pause_ms reset", author=h.admin)
    assert reset.content == "`pause_ms` is back to 200 ms here."
    assert detector.config(h.guild.id).pause_ms == 200

    # Settings live in the database: a restart keeps them.
    await h.restart()
    assert detector_of(h).config(h.guild.id).threshold == 0.7


async def test_disabling_the_plugin_hides_the_command_and_the_detector(harness):
    h = harness
    await h.ask("!plugins disable turn_smart", author=h.admin)
    # The server falls back to another detector (the core's webrtcvad one), never this one.
    assert h.bot.control.provider_for(Capability.TURN, h.guild.id) is not detector_of(h)
    await h.say("!smartturn")
    await h.expect_silence(within=0.5)


async def test_show_says_when_another_detector_serves_the_server(harness):
    h = harness
    others = [
        p
        for p in h.bot.runtime.manager.providers(Capability.TURN)
        if not isinstance(p, SmartTurnDetector)
    ]
    if not others:
        pytest.skip("no other turn detector is installed")
    await h.ask(f"!plugins use turn {others[0].id}", author=h.admin)
    reply = (await h.ask("!smartturn")).content
    assert (
        f"In use here: no — this server uses `{others[0].id}`; "
        "`!plugins use turn turn_smart` switches to Smart Turn."
    ) in reply
