"""`!elevenlabs` end to end: the real bot and discord.py against the loopback Discord
server, the plugin's synthesizer (the real ``elevenlabs`` client) against the loopback
ElevenLabs server."""

from __future__ import annotations

import hark_tts_elevenlabs as plugin
import pytest
from elevenlabs_support import GEORGE, KEY, PLUGIN_ID, RACHEL
from hark_tts_elevenlabs import ElevenLabsSynthesizer

from hark.testing.harness import BotHarness


@pytest.fixture
def elevenlabs_env(server, monkeypatch):
    """The plugin reads its configuration from the environment when the bot loads it."""
    monkeypatch.setenv("ELEVENLABS_API_KEY", KEY)
    monkeypatch.setenv("ELEVENLABS_VOICE_ID", RACHEL)
    monkeypatch.setenv("ELEVENLABS_BASE_URL", server.url)
    monkeypatch.delenv("ELEVENLABS_MODEL", raising=False)
    monkeypatch.delenv("ELEVENLABS_TIMEOUT", raising=False)
    return server


@pytest.fixture
async def harness(elevenlabs_env, hark_harness_factory):
    return await hark_harness_factory(plugins={PLUGIN_ID: plugin})


def bot_synth(h: BotHarness) -> ElevenLabsSynthesizer:
    (synth,) = h.providers(PLUGIN_ID)
    assert isinstance(synth, ElevenLabsSynthesizer)
    return synth


# Each BotHarness start costs about two seconds (discord.py waits for guilds to stream
# in), so each test below walks through several commands on one bot.


async def test_status_and_voice_listing(harness, server):
    reply = await harness.ask("!elevenlabs")
    text = reply.content
    assert f"`{server.url}`" in text and "key set" in text
    assert f"`{RACHEL}`, ELEVENLABS_VOICE_ID" in text
    assert "`eleven_multilingual_v2`" in text
    assert "stability 0.3, similarity_boost 0.8, style 0.55, speed voice default" in text
    assert "use_speaker_boost on" in text
    assert KEY not in text and KEY[:12] not in text

    reply = await harness.ask("!elevenlabs voices")
    lines = reply.content.splitlines()
    assert f"{len(server.voices)} of {len(server.voices)}" in lines[0]
    assert lines[1] == f"**Rachel** `{RACHEL}` (premade, american) ← this server"
    for voice in server.voices:
        assert f"**{voice.name}** `{voice.voice_id}`" in reply.content
    request = server.requests[-1]
    assert request.path == "/v2/voices" and request.api_key == KEY

    reply = await harness.ask("!elevenlabs voices british")
    assert "2 of 6" in reply.content
    assert "**George**" in reply.content and "**Alice**" in reply.content
    assert "Rachel" not in reply.content
    reply = await harness.ask("!elevenlabs voices cloned")
    assert "**My Cloned Voice**" in reply.content and "1 of" in reply.content
    reply = await harness.ask("!elevenlabs voices nobody-at-all")
    assert "No voice matches" in reply.content

    # A failure is one clear notice, without the key.
    server.fail_next(401, endpoint="voices")
    reply = await harness.ask("!elevenlabs voices")
    assert "rejected the bot's credentials" in reply.content
    assert KEY not in reply.content


async def test_choosing_voice_and_settings_per_server(harness, server):
    guild_id = harness.guild.id
    synth = bot_synth(harness)
    assert synth.unavailable_reason() is None

    reply = await harness.ask("!elevenlabs voice George")
    assert "Manage Server" in reply.content
    assert synth.voice_for(guild_id) == RACHEL

    reply = await harness.ask("!elevenlabs voice Nobody", author=harness.admin)
    assert "has no voice `Nobody`" in reply.content
    reply = await harness.ask("!elevenlabs voice george", author=harness.admin)
    assert f"now speaks with **George** (`{GEORGE}`)" in reply.content
    assert synth.voice_for(guild_id) == GEORGE
    reply = await harness.ask("!elevenlabs voice")
    assert f"**George** (`{GEORGE}`), chosen for this server" in reply.content

    # A name with spaces, then by id.
    reply = await harness.ask("!elevenlabs voice My Cloned Voice", author=harness.admin)
    assert "**My Cloned Voice**" in reply.content
    reply = await harness.ask(f"!elevenlabs voice {GEORGE}", author=harness.admin)
    assert "**George**" in reply.content
    reply = await harness.ask("!elevenlabs voices")
    assert f"**George** `{GEORGE}` (premade, british) ← this server" in reply.content.splitlines()

    reply = await harness.ask("!elevenlabs set stability 0.7", author=harness.admin)
    assert "stability is now 0.7" in reply.content
    reply = await harness.ask("!elevenlabs set stability 3", author=harness.admin)
    assert "between 0 and 1" in reply.content
    reply = await harness.ask("!elevenlabs set use_speaker_boost off", author=harness.admin)
    assert "use_speaker_boost is now off" in reply.content
    reply = await harness.ask("!elevenlabs set model eleven_flash_v2_5", author=harness.admin)
    assert "model is now eleven_flash_v2_5" in reply.content
    reply = await harness.ask("!elevenlabs set colour blue", author=harness.admin)
    assert "not a setting" in reply.content
    reply = await harness.ask("!elevenlabs set style 0.1")
    assert "Manage Server" in reply.content

    # The bot's synthesizer now speaks this server's way, and only in this server.
    [clip async for clip in synth.synthesize("Hello there.", guild_id=guild_id)]
    request = server.last_tts
    assert request.voice_id == GEORGE and request.model_id == "eleven_flash_v2_5"
    assert request.voice_settings["stability"] == 0.7
    assert request.voice_settings["use_speaker_boost"] is False
    [clip async for clip in synth.synthesize("Hello there.", guild_id=guild_id + 1)]
    request = server.last_tts
    assert request.voice_id == RACHEL and request.model_id == "eleven_multilingual_v2"
    assert request.voice_settings["stability"] == 0.3

    # Stored in the bot's database: it survives a restart.
    await harness.restart()
    await synth.aclose()
    synth = bot_synth(harness)
    assert synth.voice_for(guild_id) == GEORGE
    reply = await harness.ask("!elevenlabs")
    assert f"**George** (`{GEORGE}`), chosen for this server" in reply.content
    assert "stability 0.7" in reply.content and "`eleven_flash_v2_5`" in reply.content

    reply = await harness.ask("!elevenlabs voice reset", author=harness.admin)
    assert f"back to `{RACHEL}`, ELEVENLABS_VOICE_ID" in reply.content
    reply = await harness.ask("!elevenlabs set stability reset", author=harness.admin)
    assert "stability is back to 0.3" in reply.content
    assert synth.voice_for(guild_id) == RACHEL

    # Disabled in this server, the plugin's commands act as if they did not exist.
    await harness.ask(f"!plugins disable {PLUGIN_ID}", author=harness.admin)
    await harness.say("!elevenlabs")
    await harness.expect_silence(within=0.5)
