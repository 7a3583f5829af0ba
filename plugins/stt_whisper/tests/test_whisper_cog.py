"""`!whisper` end to end: the real bot and discord.py against the loopback Discord
server; the OpenAI transcriber against the loopback transcription server."""

from __future__ import annotations

import hark_stt_whisper as plugin
import pytest
from hark_stt_whisper import LocalWhisperTranscriber, OpenAIWhisperTranscriber
from whisper_support import KEY, PLUGIN_ID

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
    return await hark_harness_factory(plugins={PLUGIN_ID: plugin})


def providers(h: BotHarness) -> tuple[LocalWhisperTranscriber, OpenAIWhisperTranscriber]:
    local, remote = h.providers(PLUGIN_ID)
    assert isinstance(local, LocalWhisperTranscriber)
    assert isinstance(remote, OpenAIWhisperTranscriber)
    return local, remote


# Each BotHarness start costs about two seconds, so each test below walks through
# several commands on one bot.


async def test_status_and_language(harness, server):
    local, remote = providers(harness)
    guild_id = harness.guild.id

    reply = await harness.ask("!whisper")
    text = reply.content
    assert "Mode here: **local** (`stt_whisper:local`, default)" in text
    assert "Local model: `bundled` — bundled tiny.en" in text
    assert "Language: `en` (the local model is English-only)" in text
    assert f"`{server.base_url}`" in text and "API key set" in text
    assert KEY not in text and KEY[8:20] not in text

    reply = await harness.ask("!whisper language fr")
    assert "Manage Server" in reply.content
    assert local.language_for(guild_id) == "en"

    reply = await harness.ask("!whisper language FR", author=harness.admin)
    assert "now `fr`" in reply.content and "English-only" in reply.content
    assert remote.language_for(guild_id) == "fr"
    assert remote.language_for(guild_id + 1) is None  # other servers: unchanged

    reply = await harness.ask("!whisper language klingon", author=harness.admin)
    assert "not a language Whisper knows" in reply.content
    assert remote.language_for(guild_id) == "fr"

    reply = await harness.ask("!whisper language")
    assert "`fr` (set for this server)" in reply.content

    # The server's language reaches the API.
    await remote.transcribe(tone(0.5, 16_000), guild_id=guild_id)
    assert server.last.language == "fr"

    reply = await harness.ask("!whisper language auto", author=harness.admin)
    assert "detected automatically" in reply.content
    assert remote.language_for(guild_id) is None
    assert local.language_for(guild_id) == "en"  # English-only model

    reply = await harness.ask("!whisper language reset", author=harness.admin)
    assert "Back to the default" in reply.content


async def test_mode_and_models(harness, server, tmp_path):
    local, remote = providers(harness)
    guild_id = harness.guild.id

    reply = await harness.ask("!whisper mode openai")
    assert "Manage Server" in reply.content

    reply = await harness.ask("!whisper mode openai", author=harness.admin)
    assert "transcribe now uses `stt_whisper:openai` in this server" in reply.content
    reply = await harness.ask("!plugins")
    assert "transcribe: `stt_whisper:openai` (chosen here)" in reply.content
    reply = await harness.ask("!whisper mode")
    assert "**openai**" in reply.content and "chosen here" in reply.content

    reply = await harness.ask("!whisper openai-model gpt-4o-transcribe", author=harness.admin)
    assert "now `gpt-4o-transcribe`" in reply.content
    chosen = harness.bot.control.provider_for(remote.capability, guild_id)
    assert chosen is remote
    await chosen.transcribe(tone(0.5, 16_000), guild_id=guild_id)
    assert server.last.model == "gpt-4o-transcribe"

    # `!plugins use` is the same switch; the plugin id alone picks its best provider.
    reply = await harness.ask("!plugins use transcribe stt_whisper", author=harness.admin)
    assert "transcribe now uses `stt_whisper:" in reply.content
    reply = await harness.ask("!plugins use transcribe stt_whisper:local", author=harness.admin)
    assert "now uses `stt_whisper:local`" in reply.content
    assert harness.bot.control.provider_for(local.capability, guild_id) is local

    # Local models: only those the operator offers, and only if they load.
    reply = await harness.ask("!whisper model")
    assert "`bundled`" in reply.content and "gone-model" in reply.content
    reply = await harness.ask("!whisper model /etc", author=harness.admin)
    assert "not one of the models this bot offers" in reply.content
    reply = await harness.ask(f"!whisper model {tmp_path / 'gone-model'}", author=harness.admin)
    assert "Could not use that model" in reply.content and "does not exist" in reply.content
    assert local.model_for(guild_id) == "bundled"
    reply = await harness.ask("!whisper model bundled", author=harness.admin)
    assert "now `bundled`" in reply.content

    # Without a key the OpenAI mode is refused, and `!whisper` says why.
    remote.config.api_key = ""
    remote.config.base_url = "https://api.openai.com/v1"
    reply = await harness.ask("!whisper mode openai", author=harness.admin)
    assert "OPENAI_API_KEY is not set" in reply.content and "Nothing changed" in reply.content
    reply = await harness.ask("!whisper")
    assert "⚠ `stt_whisper:openai` can't be used: OPENAI_API_KEY is not set" in reply.content
    assert "API key not set" in reply.content
