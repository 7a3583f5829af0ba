"""`!azure` end to end: the real bot and discord.py against the loopback Discord server,
the plugin's synthesizer against the loopback Azure TTS server."""

from __future__ import annotations

import hark_tts_azure as plugin
import pytest
from azure_support import FAST_RETRY, KEY, PLUGIN_ID
from hark_tts_azure import AzureSynthesizer
from hark_tts_azure.testing import azure_voice

from hark.audio import read_wav
from hark.providers import Capability
from hark.testing.harness import BotHarness


@pytest.fixture
def azure_env(azure, monkeypatch):
    """The plugin reads its configuration from the environment when the bot loads it."""
    monkeypatch.setenv("AZURE_SPEECH_KEY", KEY)
    monkeypatch.setenv("AZURE_SPEECH_ENDPOINT", azure.url)
    for name in ("AZURE_SPEECH_REGION", "AZURE_SPEECH_VOICE", "AZURE_SPEECH_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    return azure


@pytest.fixture
async def harness(azure_env, hark_harness_factory):
    return await hark_harness_factory(plugins={PLUGIN_ID: plugin})


def bot_synthesizer(h: BotHarness) -> AzureSynthesizer:
    (synthesizer,) = h.providers(PLUGIN_ID)
    assert isinstance(synthesizer, AzureSynthesizer)
    return synthesizer


# Each BotHarness start costs about two seconds (discord.py waits for guilds to stream
# in), so each test below walks through several commands on one bot.


async def test_status_and_voice_listing(harness, azure):
    reply = await harness.ask("!azure")
    assert "**Azure Speech**" in reply.content
    assert f"Endpoint: `{azure.url}`" in reply.content
    assert "Key: set" in reply.content
    assert "`en-US-AmberNeural` (default, AZURE_SPEECH_VOICE)" in reply.content
    assert "Not usable" not in reply.content
    assert KEY not in reply.content and KEY[:8] not in reply.content

    reply = await harness.ask("!azure voices")
    lines = reply.content.splitlines()
    assert f"{len(azure.voices)} of {len(azure.voices)}" in lines[0]
    # This server's voice comes first, marked.
    assert lines[1] == "`en-US-AmberNeural` Amber, Female, English (United States) ← this server"
    for voice in azure.voices:
        assert f"`{voice['ShortName']}`" in reply.content
    assert "preview" in reply.content  # the Preview voice says so
    assert azure.voices_requests[-1].key == KEY

    reply = await harness.ask("!azure voices en-GB")
    assert "2 of 10" in reply.content
    assert "`en-GB-RyanNeural` Ryan, Male, English (United Kingdom)" in reply.content
    assert "en-US" not in reply.content

    reply = await harness.ask("!azure voices german female")
    assert "`de-DE-KatjaNeural`" in reply.content and "1 of 10" in reply.content

    reply = await harness.ask("!azure voices klingon")
    assert "No voice matches `klingon`" in reply.content

    # The list was fetched once and reused.
    assert len(azure.voices_requests) == 1

    # Long lists are capped (a filter narrows them).
    azure.voices = [
        azure_voice(f"en-US-Voice{i:03}Neural", f"V{i}", "Male", "English") for i in range(55)
    ]
    bot_synthesizer(harness).voices_ttl = 0  # fetch again
    reply = await harness.ask("!azure voices")
    assert "…and 15 more" in reply.content

    # A failure is one clear notice, without the key.
    azure.fail_next(401, endpoint="voices")
    reply = await harness.ask("!azure voices")
    assert "rejected the bot's credentials" in reply.content
    assert KEY not in reply.content


async def test_choosing_voice_and_prosody(harness, azure):
    guild_id = harness.guild.id
    synthesizer = bot_synthesizer(harness)
    assert harness.bot.control.provider_for(Capability.SYNTHESIZE, guild_id) is synthesizer

    reply = await harness.ask("!azure voice en-GB-RyanNeural")
    assert "Manage Server" in reply.content
    assert synthesizer.voice_for(guild_id) == "en-US-AmberNeural"

    reply = await harness.ask("!azure voice en-GB-NobodyNeural", author=harness.admin)
    assert "has no voice `en-GB-NobodyNeural`" in reply.content
    assert synthesizer.voice_for(guild_id) == "en-US-AmberNeural"

    # The list is cached; make the next look fetch it again, and fail three times.
    synthesizer.voices_ttl = 0
    synthesizer.retry = FAST_RETRY
    azure.fail_next(503, times=3, endpoint="voices")
    reply = await harness.ask("!azure voice en-GB-RyanNeural", author=harness.admin)
    assert "couldn't check" in reply.content and "nothing changed" in reply.content
    assert synthesizer.voice_for(guild_id) == "en-US-AmberNeural"

    # Any case is accepted; the canonical ShortName is stored.
    reply = await harness.ask("!azure voice EN-GB-ryanneural", author=harness.admin)
    assert "now speaks with `en-GB-RyanNeural` (Ryan, Male" in reply.content
    assert synthesizer.voice_for(guild_id) == "en-GB-RyanNeural"
    reply = await harness.ask("!azure voice")
    assert "`en-GB-RyanNeural` (set for this server)" in reply.content

    reply = await harness.ask("!azure rate +25%", author=harness.member)
    assert "Manage Server" in reply.content
    reply = await harness.ask("!azure rate +25%", author=harness.admin)
    assert "rate is now `+25%`" in reply.content
    reply = await harness.ask("!azure rate 9", author=harness.admin)
    assert "won't do" in reply.content and "0.5 and 2" in reply.content
    reply = await harness.ask("!azure pitch -2ST", author=harness.admin)
    assert "pitch is now `-2st`" in reply.content
    reply = await harness.ask("!azure")
    assert "Rate: +25%, pitch: -2st" in reply.content
    assert "`en-GB-RyanNeural` (set for this server)" in reply.content

    # The bot's synthesizer now speaks this server's choices, and only here.
    clips = [c async for c in synthesizer.synthesize("Cheers & goodbye", guild_id=guild_id)]
    assert clips
    ssml = azure.last_synthesis.ssml
    assert (ssml.voice, ssml.lang, ssml.rate, ssml.pitch, ssml.text) == (
        "en-GB-RyanNeural",
        "en-GB",
        "+25%",
        "-2st",
        "Cheers & goodbye",
    )
    # ...which is what the bot's own `!say` speaks with.
    reply = await harness.ask("!say Tom & Jerry's <3")
    assert [a.filename for a in reply.attachments] == ["voice.wav"]
    wav = read_wav(reply.attachments[0].data)
    ssml = azure.last_synthesis.ssml
    assert (ssml.text, ssml.voice, ssml.rate) == ("Tom & Jerry's <3", "en-GB-RyanNeural", "+25%")
    expected = azure.expected_pcm(ssml.text, ssml.voice, rate=ssml.rate, pitch=ssml.pitch)
    assert abs(wav.duration - len(expected) / 96_000) < 0.01

    [c async for c in synthesizer.synthesize("Hi", guild_id=guild_id + 1)]
    assert azure.last_synthesis.ssml.voice == "en-US-AmberNeural"
    assert azure.last_synthesis.ssml.rate is None

    # It survives a restart (stored in the bot's database); the old bot's connection
    # pool was closed when its cog was unloaded.
    session = synthesizer._session()
    await harness.restart()
    assert session.closed
    synthesizer = bot_synthesizer(harness)
    assert synthesizer.voice_for(guild_id) == "en-GB-RyanNeural"
    assert synthesizer.prosody_for(guild_id) == ("+25%", "-2st")

    reply = await harness.ask("!azure voice reset", author=harness.admin)
    assert "back to `en-US-AmberNeural`" in reply.content
    reply = await harness.ask("!azure rate reset", author=harness.admin)
    assert "back to the voice's default" in reply.content
    assert synthesizer.prosody_for(guild_id) == (None, "-2st")

    # Disabled in this server, the plugin's commands act as if they did not exist.
    await harness.ask(f"!plugins disable {PLUGIN_ID}", author=harness.admin)
    await harness.say("!azure")
    await harness.expect_silence(within=0.5)


async def test_unconfigured_plugin_says_why(azure_env, monkeypatch, tmp_path):
    monkeypatch.delenv("AZURE_SPEECH_KEY")
    async with BotHarness(tmp_path, plugins={PLUGIN_ID: plugin}) as h:
        reply = await h.ask("!azure")
        assert "Key: not set" in reply.content
        assert "⚠ Not usable: AZURE_SPEECH_KEY is not set." in reply.content
        reply = await h.ask("!azure voices")
        assert "AZURE_SPEECH_KEY is not set" in reply.content
        reply = await h.ask("!plugins")
        assert "AZURE_SPEECH_KEY is not set" in reply.content
    assert azure_env.requests == []
