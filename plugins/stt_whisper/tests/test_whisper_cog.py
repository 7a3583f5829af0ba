"""`!whisper` and `!config stt_whisper` end to end: the real bot and discord.py against
the loopback Discord server; the OpenAI transcriber against the loopback transcription
server."""

from __future__ import annotations

import json

import hark_stt_whisper as plugin
import pytest
from hark_stt_whisper import LocalWhisperTranscriber, OpenAIWhisperTranscriber
from whisper_support import KEY, PLUGIN_ID

from hark.store import SQLiteDatabase
from hark.testing.fakes import tone
from hark.testing.harness import BotHarness


@pytest.fixture
def whisper_env(server, monkeypatch, tmp_path):
    """The plugin reads its configuration from the environment when the bot loads it."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    # An offered model whose directory is gone, to see the error a server admin gets.
    monkeypatch.setenv("WHISPER_MODELS", str(tmp_path / "gone-model"))
    return server


@pytest.fixture
async def harness(whisper_env, whisper_model, hark_harness_factory):
    return await hark_harness_factory(plugins={PLUGIN_ID: plugin.plugin})


def providers(h: BotHarness) -> tuple[LocalWhisperTranscriber, OpenAIWhisperTranscriber]:
    local, remote = h.providers(PLUGIN_ID)
    assert isinstance(local, LocalWhisperTranscriber)
    assert isinstance(remote, OpenAIWhisperTranscriber)
    return local, remote


# Each BotHarness start costs about two seconds, so each test below walks through
# several commands on one bot.


def here(provider, guild_id):
    """The settings a transcription in ``guild_id`` gets."""
    return provider.resolve(guild_id).values


async def test_status_and_language(harness, server):
    local, remote = providers(harness)
    guild_id = harness.guild.id

    reply = await harness.ask("!whisper")
    text = reply.content
    assert "Mode here: **local** (`stt_whisper:local`, default)" in text
    assert "Local model: `bundled` — bundled tiny.en" in text
    assert "Language: `en` (the local model is English-only)" in text
    assert f"`{server.base_url}`" in text and "API key set" in text
    assert "`!config stt_whisper`" in text
    assert KEY not in text and KEY[8:20] not in text

    reply = await harness.ask("!config stt_whisper")
    text = reply.content
    assert "`model` = `bundled` (default)" in text
    assert "`language` = none (default)" in text
    assert f"`openai_base_url` = `{server.base_url}` (env OPENAI_BASE_URL)" in text
    assert "secret `OPENAI_API_KEY`: set" in text
    assert KEY not in text and KEY[8:20] not in text

    reply = await harness.ask("!config stt_whisper language fr")
    assert "Manage Server" in reply.content
    assert local.language_for(here(local, guild_id)) == "en"

    reply = await harness.ask("!config stt_whisper language FR", author=harness.admin)
    assert reply.content == "`stt_whisper.language` is now `fr` in this server."
    assert remote.language_for(here(remote, guild_id)) == "fr"
    assert remote.language_for(here(remote, guild_id + 1)) is None  # other servers: unchanged

    reply = await harness.ask("!config stt_whisper language klingon", author=harness.admin)
    assert reply.content == (
        "Nothing changed: `language` must be an ISO 639-1 code Whisper knows, such as"
        " `en`, `fr` or `de`, or `auto`."
    )
    assert remote.language_for(here(remote, guild_id)) == "fr"

    reply = await harness.ask("!whisper")
    assert "Language: `fr` (this server) — the local model is English-only" in reply.content

    # The server's language reaches the API.
    await remote.transcribe(tone(0.5, 16_000), guild_id=guild_id)
    assert server.last.language == "fr"

    reply = await harness.ask("!config stt_whisper language auto", author=harness.admin)
    assert "is now `auto`" in reply.content
    assert remote.language_for(here(remote, guild_id)) is None
    assert local.language_for(here(local, guild_id)) == "en"  # English-only model

    reply = await harness.ask("!config stt_whisper language reset", author=harness.admin)
    assert reply.content == "`stt_whisper.language` is back to none (default) in this server."

    # The machine's side is the owner's, bot-wide.
    reply = await harness.ask("!config stt_whisper device cuda", author=harness.admin)
    assert "can't be set in this server; it can be set bot-wide (owner)" in reply.content


async def test_mode_and_models(harness, server, tmp_path, monkeypatch):
    local, remote = providers(harness)
    guild_id = harness.guild.id

    reply = await harness.ask("!plugins use transcribe stt_whisper:openai", author=harness.admin)
    assert "transcribe now uses `stt_whisper:openai` in this server" in reply.content
    reply = await harness.ask("!whisper")
    assert "Mode here: **openai** (`stt_whisper:openai`, chosen here)" in reply.content

    reply = await harness.ask(
        "!config stt_whisper openai_model gpt-4o-transcribe", author=harness.admin
    )
    assert "is now `gpt-4o-transcribe`" in reply.content
    chosen = harness.bot.control.provider_for(remote.capability, guild_id)
    assert chosen is remote
    await chosen.transcribe(tone(0.5, 16_000), guild_id=guild_id)
    assert server.last.model == "gpt-4o-transcribe"

    # The plugin id alone picks its best provider.
    reply = await harness.ask("!plugins use transcribe stt_whisper", author=harness.admin)
    assert "transcribe now uses `stt_whisper:" in reply.content
    reply = await harness.ask("!plugins use transcribe stt_whisper:local", author=harness.admin)
    assert "now uses `stt_whisper:local`" in reply.content
    assert harness.bot.control.provider_for(local.capability, guild_id) is local

    # Local models: only those the operator offers, and only if they load.
    reply = await harness.ask("!whisper")
    assert "offered: `bundled`" in reply.content and "gone-model" in reply.content
    reply = await harness.ask("!config stt_whisper model /etc", author=harness.admin)
    assert reply.content.startswith("Nothing changed:")
    assert "not one of the models this bot offers" in reply.content
    reply = await harness.ask(
        f"!config stt_whisper model {tmp_path / 'gone-model'}", author=harness.admin
    )
    assert "could not use that model" in reply.content and "does not exist" in reply.content
    assert local.model_for(here(local, guild_id)) == "bundled"
    reply = await harness.ask("!config stt_whisper model Bundled", author=harness.admin)
    assert reply.content == "`stt_whisper.model` is now `bundled` in this server."
    # Which mode ranks first is the owner's, bot-wide.
    reply = await harness.ask("!config stt_whisper mode openai", author=harness.admin)
    assert "can't be set in this server; it can be set bot-wide (owner)" in reply.content

    # Without a key the OpenAI mode can't be used, and `!whisper` says why.
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.setenv("OPENAI_BASE_URL", "https://api.openai.com/v1")
    reply = await harness.ask("!whisper")
    assert "⚠ `stt_whisper:openai` can't be used: OPENAI_API_KEY is not set" in reply.content
    assert "API key not set" in reply.content
    reply = await harness.ask("!config stt_whisper")
    assert "secret `OPENAI_API_KEY`: not set\n" in reply.content + "\n"  # not required
    reply = await harness.ask("!plugins")
    assert "needs `OPENAI_API_KEY`" not in reply.content  # the local mode needs no key


async def test_choices_stored_before_typed_settings_are_kept(harness, server):
    """A database written by the plugin's old `!whisper language/model/openai-model`
    commands and bot-wide values (the same settings rows: namespace stt_whisper,
    scope guild:<id> or global) keeps every server's choices."""
    guild_id, other = harness.guild.id, harness.guild.id + 1
    await harness.stop()
    db = SQLiteDatabase(harness.data_dir / "hark.sqlite3")
    await db.open()
    rows = [
        (f"guild:{guild_id}", "language", "fr"),
        (f"guild:{guild_id}", "openai_model", "gpt-4o-transcribe"),
        (f"guild:{guild_id}", "model", "bundled"),
        (f"guild:{guild_id}", "beam_size", 4),
        (f"guild:{other}", "language", "auto"),
        ("global", "language", "de"),
    ]
    for scope, key, value in rows:  # exactly what SettingsStore.write used to insert
        await db.execute(
            "INSERT INTO settings (namespace, scope, key, value) VALUES (?, ?, ?, ?)",
            (PLUGIN_ID, scope, key, json.dumps(value)),
        )
    await db.close()
    await harness.start()

    local, remote = providers(harness)
    await remote.transcribe(tone(0.5, 16_000), guild_id=guild_id)
    assert (server.last.model, server.last.language) == ("gpt-4o-transcribe", "fr")
    await remote.transcribe(tone(0.5, 16_000), guild_id=other)
    assert (server.last.model, server.last.language) == ("whisper-1", None)
    await remote.transcribe(tone(0.5, 16_000), guild_id=other + 1)
    assert server.last.language == "de"
    options = local.options(here(local, guild_id), None, None)
    assert options["beam_size"] == 4
    reply = await harness.ask("!config stt_whisper")
    assert "`language` = `fr` (this server)" in reply.content
    assert "`openai_model` = `gpt-4o-transcribe` (this server)" in reply.content
    assert "`beam_size` = `4` (this server)" in reply.content
