"""``!smartturn`` and ``!config turn_smart`` end to end: the real bot on the loopback
Discord server."""

from __future__ import annotations

import json

import hark_turn_smart
import pytest
from hark_turn_smart import SmartTurnDetector

from hark import Capability
from hark.store import SQLiteDatabase
from hark.testing.harness import BotHarness

VOICE = {"min_speech_ms": 250, "pre_roll_ms": 300, "max_utterance_ms": 15_000}


def detector_of(h: BotHarness) -> SmartTurnDetector:
    (provider,) = [p for p in h.providers("turn_smart") if isinstance(p, SmartTurnDetector)]
    return provider


@pytest.fixture
async def harness(tmp_path):
    async with BotHarness(tmp_path, plugins={"turn_smart": hark_turn_smart.plugin}) as h:
        yield h


async def test_it_is_this_servers_turn_detector(harness):
    chosen = harness.bot.control.provider_for(Capability.TURN, harness.guild.id)
    assert chosen is detector_of(harness)
    assert chosen.id == "turn_smart"


async def test_status_and_settings_are_shown(harness):
    reply = (await harness.ask("!smartturn")).content
    lines = reply.splitlines()
    assert lines[0].startswith("**Smart Turn**")
    assert "In use here: yes." in lines
    assert lines[-1] == "`!config turn_smart` shows and changes its pause, wait and thresholds."

    reply = (await harness.ask("!config turn_smart")).content
    lines = reply.splitlines()
    assert "`pause_ms` = `200` (default)" in lines
    assert "`max_wait_ms` = `2000` (default)" in lines
    assert "`threshold` = `0.5` (default)" in lines
    assert "`min_speech_ms` = none (default)" in lines
    reply = (await harness.ask("!config turn_smart pause_ms")).content
    assert "Silence (ms) before Smart Turn is asked whether the turn is complete" in reply
    assert "a whole number between 60 and 1500" in reply
    # Showing never loads the models (they load when a voice session starts).
    assert not detector_of(harness).loaded


async def test_config_needs_manage_server_and_reaches_the_detector(harness):
    h = harness
    detector = detector_of(h)
    denied = await h.ask("!config turn_smart pause_ms 300")
    assert "Manage Server" in denied.content
    assert detector.config(h.guild.id).pause_ms == 200

    ok = await h.ask("!config turn_smart pause_ms 300ms", author=h.admin)
    assert ok.content == "`turn_smart.pause_ms` is now `300` in this server."
    assert detector.config(h.guild.id).pause_ms == 300
    assert detector.config(h.guild.id + 1).pause_ms == 200  # only this server
    assert "`pause_ms` = `300` (this server)" in (await h.ask("!config turn_smart")).content

    ok = await h.ask("!config turn_smart threshold 70%", author=h.admin)
    assert ok.content == "`turn_smart.threshold` is now `0.7` in this server."
    await h.ask("!config turn_smart min_speech_ms 400", author=h.admin)
    config = detector.config(h.guild.id, VOICE)
    assert (config.threshold, config.min_speech_ms) == (0.7, 400)
    # `voice` (or `none`) is "the voice setting's" again, while set here.
    await h.ask("!config turn_smart min_speech_ms voice", author=h.admin)
    assert detector.config(h.guild.id, VOICE).min_speech_ms == 250

    await h.ask("!config turn_smart max_wait_ms 250", author=h.admin)
    assert detector.config(h.guild.id).max_wait_ms == 300  # never below pause_ms

    bad = await h.ask("!config turn_smart threshold 2", author=h.admin)
    assert bad.content == "Nothing changed: `threshold` must be a number between 0 and 1."
    bad = await h.ask("!config turn_smart pause_ms soon", author=h.admin)
    assert bad.content == (
        "Nothing changed: `pause_ms` must be a whole number between 60 and 1500."
    )
    unknown = await h.ask("!config turn_smart silence_ms 300", author=h.admin)
    assert "there is no setting `silence_ms` (settings: `pause_ms`" in unknown.content

    reset = await h.ask("!config turn_smart pause_ms reset", author=h.admin)
    assert reset.content == "`turn_smart.pause_ms` is back to `200` (default) in this server."
    assert detector.config(h.guild.id).pause_ms == 200

    # Settings live in the database: a restart keeps them.
    await h.restart()
    assert detector_of(h).config(h.guild.id).threshold == 0.7


async def test_choices_stored_before_typed_settings_are_kept(harness):
    """A database written by the plugin's old `!smartturn set` (the same settings rows:
    namespace turn_smart, scope guild:<id>, numbers or null as JSON) keeps every
    server's choices."""
    h = harness
    guild_id, other = h.guild.id, h.guild.id + 1
    await h.stop()
    db = SQLiteDatabase(h.data_dir / "hark.sqlite3")
    await db.open()
    rows = [
        (f"guild:{guild_id}", "pause_ms", 300),
        (f"guild:{guild_id}", "threshold", 0.7),
        (f"guild:{guild_id}", "min_speech_ms", 400),
        (f"guild:{other}", "max_wait_ms", 1500),
        (f"guild:{other}", "min_speech_ms", None),  # `!smartturn set min_speech_ms voice`
        ("global", "speech_threshold", 0.4),
    ]
    for scope, key, value in rows:  # exactly what SettingsStore.write used to insert
        await db.execute(
            "INSERT INTO settings (namespace, scope, key, value) VALUES (?, ?, ?, ?)",
            ("turn_smart", scope, key, json.dumps(value)),
        )
    await db.close()
    await h.start()

    detector = detector_of(h)
    here = detector.config(guild_id, VOICE)
    assert (here.pause_ms, here.threshold, here.min_speech_ms) == (300, 0.7, 400)
    assert here.speech_threshold == 0.4
    there = detector.config(other, VOICE)
    assert (there.pause_ms, there.max_wait_ms, there.min_speech_ms) == (200, 1500, 250)
    reply = (await h.ask("!config turn_smart")).content
    assert "`pause_ms` = `300` (this server)" in reply
    assert "`speech_threshold` = `0.4` (bot-wide (owner))" in reply


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
