"""`!elevenlabs` and `!config tts_elevenlabs` end to end: the real bot and discord.py
against the loopback Discord server, the plugin's synthesizer (the real ``elevenlabs``
client) against the loopback ElevenLabs server."""

from __future__ import annotations

import json

import hark_tts_elevenlabs as plugin
import pytest
from elevenlabs_support import GEORGE, KEY, PLUGIN_ID, RACHEL
from hark_tts_elevenlabs import ElevenLabsSynthesizer

from hark.store import SQLiteDatabase
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
    return await hark_harness_factory(plugins={PLUGIN_ID: plugin.plugin})


def bot_synth(h: BotHarness) -> ElevenLabsSynthesizer:
    (synth,) = h.providers(PLUGIN_ID)
    assert isinstance(synth, ElevenLabsSynthesizer)
    return synth


# Each BotHarness start costs about two seconds (discord.py waits for guilds to stream
# in), so each test below walks through several commands on one bot.


async def test_status_and_voice_listing(harness, server):
    reply = await harness.ask("!elevenlabs")
    text = reply.content
    assert text.startswith(f"**ElevenLabs** at `{server.url}`: ready.")
    assert "pcm_22050" in text and "`!config tts_elevenlabs`" in text
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


def voice_here(synth: ElevenLabsSynthesizer, guild_id: int) -> str | None:
    resolved = synth.resolve(guild_id)
    assert resolved is not None
    return resolved.values.voice_id


async def test_choosing_voice_and_settings_per_server(harness, server):
    guild_id = harness.guild.id
    synth = bot_synth(harness)
    assert synth.unavailable_reason() is None

    reply = await harness.ask("!config tts_elevenlabs")
    text = reply.content
    assert f"`voice_id` = `{RACHEL}` (env ELEVENLABS_VOICE_ID)" in text
    assert "`model` = `eleven_multilingual_v2` (default)" in text
    assert "`stability` = `0.3` (default)" in text
    assert "`use_speaker_boost` = `on` (default)" in text
    assert "`speed` = none (default)" in text
    assert f"`base_url` = `{server.url}` (env ELEVENLABS_BASE_URL)" in text
    assert "secret `ELEVENLABS_API_KEY`: set" in text
    assert KEY not in text and KEY[:12] not in text

    # A member without Manage Server can look, not change.
    reply = await harness.ask("!config tts_elevenlabs voice_id George")
    assert "Manage Server" in reply.content
    assert voice_here(synth, guild_id) == RACHEL

    # The voice is looked up (by name, any case, or by id) and stored as its id.
    reply = await harness.ask("!config tts_elevenlabs voice_id Nobody", author=harness.admin)
    assert reply.content.startswith("Nothing changed:")
    assert "has no voice `Nobody`" in reply.content and "\n" not in reply.content
    reply = await harness.ask("!config tts_elevenlabs voice_id george", author=harness.admin)
    assert reply.content == f"`tts_elevenlabs.voice_id` is now `{GEORGE}` in this server."
    assert voice_here(synth, guild_id) == GEORGE
    reply = await harness.ask("!config tts_elevenlabs voice_id")
    assert reply.content.startswith(f"`tts_elevenlabs.voice_id` = `{GEORGE}` (this server)")

    # A name with spaces, then by id.
    reply = await harness.ask(
        "!config tts_elevenlabs voice_id My Cloned Voice", author=harness.admin
    )
    assert "is now `cloneD0000000000aaaa`" in reply.content
    reply = await harness.ask(f"!config tts_elevenlabs voice_id {GEORGE}", author=harness.admin)
    assert f"is now `{GEORGE}`" in reply.content
    reply = await harness.ask("!elevenlabs voices")
    assert f"**George** `{GEORGE}` (premade, british) ← this server" in reply.content.splitlines()

    reply = await harness.ask("!config tts_elevenlabs stability 0.7", author=harness.admin)
    assert reply.content == "`tts_elevenlabs.stability` is now `0.7` in this server."
    reply = await harness.ask("!config tts_elevenlabs stability 3", author=harness.admin)
    assert reply.content == "Nothing changed: `stability` must be a number between 0 and 1."
    reply = await harness.ask("!config tts_elevenlabs use_speaker_boost off", author=harness.admin)
    assert "`tts_elevenlabs.use_speaker_boost` is now `off`" in reply.content
    reply = await harness.ask(
        "!config tts_elevenlabs model eleven_flash_v2_5", author=harness.admin
    )
    assert "`tts_elevenlabs.model` is now `eleven_flash_v2_5`" in reply.content
    reply = await harness.ask("!config tts_elevenlabs colour blue", author=harness.admin)
    assert "there is no setting `colour`" in reply.content
    reply = await harness.ask("!config tts_elevenlabs style 0.1")
    assert "Manage Server" in reply.content
    # Where the API is belongs to the bot's owner.
    reply = await harness.ask(
        "!config tts_elevenlabs base_url http://example.com", author=harness.admin
    )
    assert "can't be set in this server; it can be set bot-wide (owner)" in reply.content

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

    # Stored in the bot's database: it survives a restart (the old bot's connection
    # pool was closed when its cog was unloaded).
    http = synth._http
    await harness.restart()
    assert http is not None and http.is_closed
    synth = bot_synth(harness)
    assert voice_here(synth, guild_id) == GEORGE
    reply = await harness.ask("!config tts_elevenlabs")
    assert f"`voice_id` = `{GEORGE}` (this server)" in reply.content
    assert "`stability` = `0.7` (this server)" in reply.content
    assert "`model` = `eleven_flash_v2_5` (this server)" in reply.content

    # `reset` (or any of the core's reset words) brings back the inherited value.
    reply = await harness.ask("!config tts_elevenlabs voice_id reset", author=harness.admin)
    assert reply.content == (
        f"`tts_elevenlabs.voice_id` is back to `{RACHEL}` (env ELEVENLABS_VOICE_ID) in this server."
    )
    reply = await harness.ask("!config tts_elevenlabs stability default", author=harness.admin)
    assert "is back to `0.3` (default)" in reply.content
    assert voice_here(synth, guild_id) == RACHEL

    # Disabled in this server, the plugin's commands act as if they did not exist.
    await harness.ask(f"!plugins disable {PLUGIN_ID}", author=harness.admin)
    await harness.say("!elevenlabs")
    await harness.expect_silence(within=0.5)


async def test_config_through_slash_commands(harness, server):
    guild, channel, fake = harness.guild, harness.channel, harness.server
    synth = bot_synth(harness)
    options = {"plugin": "tts_elevenlabs", "key": "voice_id", "value": "George"}

    inter = await fake.invoke_slash(guild, channel, harness.member, "config", options)
    refused = await inter.wait_response()
    assert "Manage Server" in refused.content and refused.ephemeral
    assert voice_here(synth, guild.id) == RACHEL

    inter = await fake.invoke_slash(guild, channel, harness.admin, "config", options)
    done = await inter.wait_response()
    assert done.content == f"`tts_elevenlabs.voice_id` is now `{GEORGE}` in this server."

    bad = {"plugin": "tts_elevenlabs", "key": "speed", "value": "2"}
    inter = await fake.invoke_slash(guild, channel, harness.admin, "config", bad)
    answer = await inter.wait_response()
    assert answer.content == "Nothing changed: `speed` must be a number between 0.7 and 1.2."

    choices = await fake.invoke_autocomplete(
        guild,
        channel,
        harness.admin,
        "config",
        {"plugin": "tts_elevenlabs", "key": "use_speaker_boost", "value": ""},
        "value",
    )
    assert [c["value"] for c in choices] == ["on", "off", "reset"]

    reset = {**options, "value": "reset"}
    inter = await fake.invoke_slash(guild, channel, harness.admin, "config", reset)
    answer = await inter.wait_response()
    assert f"back to `{RACHEL}` (env ELEVENLABS_VOICE_ID)" in answer.content


async def test_unconfigured_plugin_says_why(elevenlabs_env, monkeypatch, tmp_path):
    monkeypatch.delenv("ELEVENLABS_API_KEY")
    async with BotHarness(tmp_path, plugins={PLUGIN_ID: plugin.plugin}) as h:
        reply = await h.ask("!elevenlabs")
        assert "⚠ not usable: ELEVENLABS_API_KEY is not set." in reply.content
        reply = await h.ask("!plugins")
        assert "needs `ELEVENLABS_API_KEY`" in reply.content
        reply = await h.ask("!config tts_elevenlabs")
        assert "secret `ELEVENLABS_API_KEY`: not set (required)" in reply.content
    assert elevenlabs_env.requests == []


async def test_choices_stored_by_the_old_commands_are_kept(harness, server):
    """A database written by the plugin's old `!elevenlabs voice` / `!elevenlabs set`
    commands (the same rows: namespace tts_elevenlabs, scope guild:<id>, and the voice's
    name beside its id) keeps every server's choices."""
    guild_id, other = harness.guild.id, harness.guild.id + 1
    await harness.stop()
    db = SQLiteDatabase(harness.data_dir / "hark.sqlite3")
    await db.open()
    rows = [
        (f"guild:{guild_id}", "voice_id", GEORGE),
        (f"guild:{guild_id}", "voice_name", "George"),  # no longer a setting: left alone
        (f"guild:{guild_id}", "model", "eleven_flash_v2_5"),
        (f"guild:{guild_id}", "stability", 0.7),
        (f"guild:{guild_id}", "use_speaker_boost", False),
        (f"guild:{guild_id}", "speed", 1.1),
        (f"guild:{other}", "style", 0.1),
    ]
    for scope, key, value in rows:  # exactly what SettingsStore.write used to insert
        await db.execute(
            "INSERT INTO settings (namespace, scope, key, value) VALUES (?, ?, ?, ?)",
            (PLUGIN_ID, scope, key, json.dumps(value)),
        )
    await db.close()
    await harness.start()

    synth = bot_synth(harness)
    [clip async for clip in synth.synthesize("Hello there.", guild_id=guild_id)]
    request = server.last_tts
    assert (request.voice_id, request.model_id) == (GEORGE, "eleven_flash_v2_5")
    assert request.voice_settings == {
        "stability": 0.7,
        "similarity_boost": 0.8,
        "style": 0.55,
        "use_speaker_boost": False,
        "speed": 1.1,
    }
    [clip async for clip in synth.synthesize("Hello there.", guild_id=other)]
    request = server.last_tts
    assert request.voice_id == RACHEL and request.voice_settings["style"] == 0.1
    reply = await harness.ask("!config tts_elevenlabs")
    assert f"`voice_id` = `{GEORGE}` (this server)" in reply.content
    assert "`speed` = `1.1` (this server)" in reply.content
    assert "voice_name" not in reply.content
