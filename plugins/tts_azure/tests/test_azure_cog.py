"""`!azure` and `!config tts_azure` end to end: the real bot and discord.py against the
loopback Discord server, the plugin's synthesizer against the loopback Azure TTS server."""

from __future__ import annotations

import json

import hark_tts_azure as plugin
import pytest
from azure_support import FAST_RETRY, KEY, PLUGIN_ID
from fake_azure import azure_voice
from hark_tts_azure import AzureSynthesizer

from hark.audio import read_wav
from hark.providers import Capability
from hark.store import SQLiteDatabase
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
    return await hark_harness_factory(plugins={PLUGIN_ID: plugin.plugin})


def bot_synthesizer(h: BotHarness) -> AzureSynthesizer:
    (synthesizer,) = h.providers(PLUGIN_ID)
    assert isinstance(synthesizer, AzureSynthesizer)
    return synthesizer


# Each BotHarness start costs about two seconds (discord.py waits for guilds to stream
# in), so each test below walks through several commands on one bot.


async def test_status_and_voice_listing(harness, azure):
    reply = await harness.ask("!azure")
    assert reply.content.startswith(f"**Azure Speech** at `{azure.url}`: ready.")
    assert "`!config tts_azure`" in reply.content
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


@pytest.fixture
async def configured(azure_env, monkeypatch, hark_harness_factory):
    """A bot whose voice comes from the environment and whose rate from bot.toml."""
    monkeypatch.setenv("AZURE_SPEECH_VOICE", "en-GB-RyanNeural")
    return await hark_harness_factory(
        plugins={PLUGIN_ID: plugin.plugin},
        config={"plugin_settings": {PLUGIN_ID: {"rate": "-10%"}}},
    )


async def spoken(synthesizer: AzureSynthesizer, azure, guild_id: int | None):
    clips = [c async for c in synthesizer.synthesize("Cheers & goodbye", guild_id=guild_id)]
    assert clips
    ssml = azure.last_synthesis.ssml
    return ssml.voice, ssml.rate, ssml.pitch


async def test_config_voice_and_prosody(configured, azure):
    harness = configured
    guild_id = harness.guild.id
    synthesizer = bot_synthesizer(harness)
    assert harness.bot.control.provider_for(Capability.SYNTHESIZE, guild_id) is synthesizer

    reply = await harness.ask("!config tts_azure")
    text = reply.content
    assert "`voice` = `en-GB-RyanNeural` (env AZURE_SPEECH_VOICE)" in text
    assert "`rate` = `-10%` (bot.toml)" in text
    assert "`pitch` = none (default)" in text
    assert "secret `AZURE_SPEECH_KEY`: set" in text
    assert KEY not in text and KEY[:8] not in text
    assert await spoken(synthesizer, azure, guild_id) == ("en-GB-RyanNeural", "-10%", None)

    # A member without Manage Server can look, not change.
    reply = await harness.ask("!config tts_azure voice en-GB-SoniaNeural")
    assert "Manage Server" in reply.content
    assert synthesizer.resolve(guild_id).values.voice == "en-GB-RyanNeural"

    # The voice is checked against Azure's list, and refused with one line.
    reply = await harness.ask("!config tts_azure voice en-GB-NobodyNeural", author=harness.admin)
    assert reply.content.startswith("Nothing changed:")
    assert "has no voice `en-GB-NobodyNeural`" in reply.content
    assert "\n" not in reply.content
    # The list is cached; make the next look fetch it again, and fail three times.
    synthesizer.voices_ttl = 0
    synthesizer.retry = FAST_RETRY
    azure.fail_next(503, times=3, endpoint="voices")
    reply = await harness.ask("!config tts_azure voice en-GB-SoniaNeural", author=harness.admin)
    assert "couldn't check" in reply.content and "nothing changed" in reply.content

    # Any case is accepted; the canonical ShortName is stored, and the next synthesis uses it.
    reply = await harness.ask("!config tts_azure voice EN-GB-sonianeural", author=harness.admin)
    assert reply.content == "`tts_azure.voice` is now `en-GB-SoniaNeural` in this server."
    assert await spoken(synthesizer, azure, guild_id) == ("en-GB-SoniaNeural", "-10%", None)

    reply = await harness.ask("!config tts_azure rate +25%", author=harness.admin)
    assert reply.content == "`tts_azure.rate` is now `+25%` in this server."
    reply = await harness.ask("!config tts_azure rate 9", author=harness.admin)
    assert reply.content == (
        "Nothing changed: `rate`: a rate multiplier must be between 0.5 and 2."
    )
    reply = await harness.ask("!config tts_azure pitch -2ST", author=harness.admin)
    assert "is now `-2st`" in reply.content
    # Region and endpoint are the owner's to set, bot-wide.
    reply = await harness.ask("!config tts_azure region westus", author=harness.admin)
    assert "can't be set in this server; it can be set bot-wide (owner)" in reply.content

    reply = await harness.ask("!config tts_azure")
    assert "`voice` = `en-GB-SoniaNeural` (this server)" in reply.content
    assert "`rate` = `+25%` (this server)" in reply.content
    assert await spoken(synthesizer, azure, guild_id) == ("en-GB-SoniaNeural", "+25%", "-2st")

    # ...which is what the bot's own `!say` speaks with.
    reply = await harness.ask("!say Tom & Jerry's <3")
    assert [a.filename for a in reply.attachments] == ["voice.wav"]
    wav = read_wav(reply.attachments[0].data)
    ssml = azure.last_synthesis.ssml
    assert (ssml.text, ssml.voice, ssml.rate) == ("Tom & Jerry's <3", "en-GB-SoniaNeural", "+25%")
    expected = azure.expected_pcm(ssml.text, ssml.voice, rate=ssml.rate, pitch=ssml.pitch)
    assert abs(wav.duration - len(expected) / 96_000) < 0.01

    # Only here: another server keeps the environment's and bot.toml's values.
    assert await spoken(synthesizer, azure, guild_id + 1) == ("en-GB-RyanNeural", "-10%", None)

    # It survives a restart (stored in the bot's database); the old bot's connection
    # pool was closed when its cog was unloaded.
    session = synthesizer._session()
    await harness.restart()
    assert session.closed
    synthesizer = bot_synthesizer(harness)
    assert await spoken(synthesizer, azure, guild_id) == ("en-GB-SoniaNeural", "+25%", "-2st")

    # `reset` (or any of the core's reset words) brings back the inherited value.
    reply = await harness.ask("!config tts_azure voice reset", author=harness.admin)
    assert reply.content == (
        "`tts_azure.voice` is back to `en-GB-RyanNeural` (env AZURE_SPEECH_VOICE) in this server."
    )
    reply = await harness.ask("!config tts_azure rate default", author=harness.admin)
    assert "is back to `-10%` (bot.toml)" in reply.content
    assert await spoken(synthesizer, azure, guild_id) == ("en-GB-RyanNeural", "-10%", "-2st")

    # Disabled in this server, `!azure` acts as if it did not exist; admins can still
    # prepare its settings with `!config`.
    await harness.ask(f"!plugins disable {PLUGIN_ID}", author=harness.admin)
    await harness.say("!azure")
    await harness.expect_silence(within=0.5)
    reply = await harness.ask("!config tts_azure")
    assert "(the plugin is off in this server)" in reply.content


async def test_config_through_slash_commands(configured, azure):
    harness, server = configured, configured.server
    guild, channel = harness.guild, harness.channel
    synthesizer = bot_synthesizer(harness)
    options = {"plugin": "tts_azure", "key": "voice", "value": "en-GB-SoniaNeural"}

    inter = await server.invoke_slash(guild, channel, harness.member, "config", options)
    refused = await inter.wait_response()
    assert "Manage Server" in refused.content and refused.ephemeral
    assert synthesizer.resolve(guild.id).values.voice == "en-GB-RyanNeural"

    inter = await server.invoke_slash(guild, channel, harness.admin, "config", options)
    done = await inter.wait_response()
    assert done.content == "`tts_azure.voice` is now `en-GB-SoniaNeural` in this server."
    assert await spoken(synthesizer, azure, guild.id) == ("en-GB-SoniaNeural", "-10%", None)

    bad = {"plugin": "tts_azure", "key": "rate", "value": "9"}
    inter = await server.invoke_slash(guild, channel, harness.admin, "config", bad)
    answer = await inter.wait_response()
    assert answer.content == "Nothing changed: `rate`: a rate multiplier must be between 0.5 and 2."

    reset = {**options, "value": "reset"}
    inter = await server.invoke_slash(guild, channel, harness.admin, "config", reset)
    answer = await inter.wait_response()
    assert "back to `en-GB-RyanNeural` (env AZURE_SPEECH_VOICE)" in answer.content
    assert await spoken(synthesizer, azure, guild.id) == ("en-GB-RyanNeural", "-10%", None)

    inter = await server.invoke_slash(guild, channel, harness.member, "config", {"plugin": "azure"})
    shown = await inter.wait_response()
    assert "`voice` = `en-GB-RyanNeural` (env AZURE_SPEECH_VOICE)" in shown.content
    assert KEY not in shown.content

    # Autocomplete: plugins, then the plugin's keys, then values (here only `reset`).
    choices = await server.invoke_autocomplete(
        guild, channel, harness.admin, "config", {"plugin": "az"}, "plugin"
    )
    assert [c["value"] for c in choices] == ["tts_azure"]
    choices = await server.invoke_autocomplete(
        guild, channel, harness.admin, "config", {"plugin": "tts_azure", "key": "p"}, "key"
    )
    assert [c["value"] for c in choices] == ["pitch", "endpoint"]  # starting with it first
    choices = await server.invoke_autocomplete(
        guild,
        channel,
        harness.admin,
        "config",
        {"plugin": "tts_azure", "key": "rate", "value": "re"},
        "value",
    )
    assert [c["value"] for c in choices] == ["reset"]


async def test_unconfigured_plugin_says_why(azure_env, monkeypatch, tmp_path):
    monkeypatch.delenv("AZURE_SPEECH_KEY")
    async with BotHarness(tmp_path, plugins={PLUGIN_ID: plugin.plugin}) as h:
        reply = await h.ask("!azure")
        assert "⚠ not usable: AZURE_SPEECH_KEY is not set." in reply.content
        reply = await h.ask("!azure voices")
        assert "AZURE_SPEECH_KEY is not set" in reply.content
        reply = await h.ask("!plugins")
        assert "— needs `AZURE_SPEECH_KEY`" in reply.content
        reply = await h.ask("!config tts_azure")
        assert "secret `AZURE_SPEECH_KEY`: not set (required)" in reply.content
        assert "⚠ `tts_azure` is not usable: AZURE_SPEECH_KEY is not set" in reply.content
    assert azure_env.requests == []


async def test_choices_stored_before_typed_settings_are_kept(harness, azure):
    """A database written by the plugin's old `!azure voice/rate/pitch` commands (the
    same settings rows: namespace tts_azure, scope guild:<id> or global) keeps every
    server's choices."""
    guild_id, other = harness.guild.id, harness.guild.id + 1
    await harness.stop()
    db = SQLiteDatabase(harness.data_dir / "hark.sqlite3")
    await db.open()
    rows = [
        (f"guild:{guild_id}", "voice", "en-GB-RyanNeural"),
        (f"guild:{guild_id}", "rate", "+25%"),
        (f"guild:{guild_id}", "pitch", "-2st"),
        (f"guild:{other}", "voice", "en-US-GuyNeural"),
        ("global", "voice", "de-DE-KatjaNeural"),
    ]
    for scope, key, value in rows:  # exactly what SettingsStore.write used to insert
        await db.execute(
            "INSERT INTO settings (namespace, scope, key, value) VALUES (?, ?, ?, ?)",
            (PLUGIN_ID, scope, key, json.dumps(value)),
        )
    await db.close()
    await harness.start()

    synthesizer = bot_synthesizer(harness)
    assert await spoken(synthesizer, azure, guild_id) == ("en-GB-RyanNeural", "+25%", "-2st")
    assert await spoken(synthesizer, azure, other) == ("en-US-GuyNeural", None, None)
    assert await spoken(synthesizer, azure, other + 1) == ("de-DE-KatjaNeural", None, None)
    reply = await harness.ask("!config tts_azure")
    assert "`voice` = `en-GB-RyanNeural` (this server)" in reply.content
    assert "`rate` = `+25%` (this server)" in reply.content
