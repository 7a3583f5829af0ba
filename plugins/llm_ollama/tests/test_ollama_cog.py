"""``!ollama`` end to end: the real bot on the loopback Discord server, the real
``ollama`` client on the loopback fake Ollama server."""

from __future__ import annotations

import hark_llm_ollama
import pytest
from hark_llm_ollama import OllamaGenerator
from hark_llm_ollama.cog import parse_setting
from hark_llm_ollama.testing import unused_url

from hark import Capability
from hark.providers import RetryPolicy
from hark.testing.harness import BotHarness


@pytest.fixture
async def harness(tmp_path, fake_ollama, monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", fake_ollama.url)
    async with BotHarness(tmp_path, plugins={"llm_ollama": hark_llm_ollama}) as h:
        generator(h).retry = RetryPolicy(attempts=2, base_delay=0.01)
        yield h


def generator(h: BotHarness) -> OllamaGenerator:
    (provider,) = h.bot.runtime.manager.providers(Capability.GENERATE)
    assert isinstance(provider, OllamaGenerator)
    return provider


async def test_models_lists_the_server_and_marks_the_one_used_here(harness, fake_ollama):
    reply = await harness.ask("!ollama models")
    lines = reply.content.splitlines()
    assert fake_ollama.url in lines[0]
    assert any("**`llama3.2:latest`**" in line and "used here" in line for line in lines)
    assert any("`qwen2.5:7b`" in line and "used here" not in line for line in lines)
    assert fake_ollama.requests[-1].path == "/api/tags"


async def test_choosing_a_model_needs_manage_server(harness, fake_ollama):
    shown = await harness.ask("!ollama model")
    assert shown.content == "This server uses `llama3.2` (built-in default)."
    denied = await harness.ask("!ollama model qwen2.5:7b")
    assert "Manage" in denied.content
    assert generator(harness).model_for(harness.guild.id) == "llama3.2"

    ok = await harness.ask("!ollama model qwen2.5:7b", author=harness.admin)
    assert "now uses `qwen2.5:7b`" in ok.content
    assert generator(harness).model_for(harness.guild.id) == "qwen2.5:7b"

    listing = await harness.ask("!ollama models")
    assert any(
        "qwen2.5:7b" in line and "used here" in line for line in listing.content.splitlines()
    )
    # the next reply in this server goes to the chosen model
    await generator(harness).complete([], guild_id=harness.guild.id)
    assert fake_ollama.last_chat["model"] == "qwen2.5:7b"

    # ...and it survives a restart (it is in the bot's database)
    await harness.restart()
    assert generator(harness).model_for(harness.guild.id) == "qwen2.5:7b"
    shown = await harness.ask("!ollama model")
    assert shown.content == "This server uses `qwen2.5:7b` (chosen for this server)."

    reset = await harness.ask("!ollama model reset", author=harness.admin)
    assert "default model, `llama3.2`" in reset.content
    assert generator(harness).model_for(harness.guild.id) == "llama3.2"


async def test_a_model_that_is_not_pulled_is_refused(harness):
    reply = await harness.ask("!ollama model mistral", author=harness.admin)
    assert "`mistral` is not on the Ollama server" in reply.content
    assert "ollama pull mistral" in reply.content
    assert generator(harness).model_for(harness.guild.id) == "llama3.2"

    # set behind the command's back (e.g. bot.toml): both listings say what to do
    await generator(harness).set_model(harness.guild.id, "mistral")
    listing = (await harness.ask("!ollama models")).content
    assert "used here" not in listing
    assert "This server uses `mistral`, which is not on the server: `ollama pull mistral`" in (
        listing
    )
    status = (await harness.ask("!ollama")).content
    assert "`mistral` is **not pulled**: run `ollama pull mistral` on the server" in status


async def test_status_and_options(harness, fake_ollama):
    await harness.ask("!ollama set temperature 0.3", author=harness.admin)
    reply = await harness.ask("!ollama set num_ctx 8192", author=harness.admin)
    assert reply.content == "`num_ctx` is now `8192` here."
    bad = await harness.ask("!ollama set num_ctx lots", author=harness.admin)
    assert "whole number" in bad.content
    denied = await harness.ask("!ollama set temperature 1")
    assert "Manage" in denied.content

    status = (await harness.ask("!ollama")).content
    assert fake_ollama.url in status
    assert "Model here: `llama3.2` (built-in default)" in status
    assert "temperature `0.3`" in status and "num_ctx `8192`" in status
    assert "keep_alive default" in status
    assert "reachable, 2 model(s); `llama3.2` is pulled" in status

    await generator(harness).complete([], guild_id=harness.guild.id)
    assert fake_ollama.last_chat["options"] == {"temperature": 0.3, "num_ctx": 8192}

    cleared = await harness.ask("!ollama set temperature reset", author=harness.admin)
    assert cleared.content == "`temperature` is back to default here."
    await generator(harness).complete([], guild_id=harness.guild.id)
    assert fake_ollama.last_chat["options"] == {"num_ctx": 8192}


async def test_when_the_server_is_down(harness, monkeypatch):
    down = unused_url()
    monkeypatch.setenv("OLLAMA_HOST", down)
    listing = await harness.ask("!ollama models")
    assert listing.content == f"Couldn't list the models: cannot reach Ollama at {down}."
    status = await harness.ask("!ollama")
    assert f"Server: not reachable (cannot reach Ollama at {down})" in status.content
    # choosing a model still works while the server is away, with a warning
    chosen = await harness.ask("!ollama model qwen2.5:7b", author=harness.admin)
    assert "now uses `qwen2.5:7b`" in chosen.content and "could not check" in chosen.content


async def test_slash_models(harness):
    h = harness
    interaction = await h.server.invoke_slash(
        h.guild, h.channel, h.member, "ollama", subcommand="models"
    )
    message = await interaction.wait_response()
    assert "llama3.2:latest" in message.content and "used here" in message.content


async def test_disabled_plugin_has_no_commands(harness):
    await harness.ask("!plugins disable llm_ollama", author=harness.admin)
    await harness.say("!ollama models")
    await harness.expect_silence(within=0.5)


@pytest.mark.parametrize(
    ("key", "text", "value"),
    [
        ("temperature", "0.7", 0.7),
        ("num_ctx", "4096", 4096),
        ("keep_alive", "10m", "10m"),
        ("keep_alive", "1h30m", "1h30m"),
        ("keep_alive", "-1", -1),
        ("think", "off", False),
        ("think", "high", "high"),
    ],
)
def test_parse_setting(key, text, value):
    assert parse_setting(key, text) == value


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("temperature", "hot"),
        ("temperature", "3"),
        ("temperature", "nan"),
        ("num_ctx", "12"),
        ("keep_alive", "forever"),
        ("think", "maybe"),
        ("colour", "blue"),
    ],
)
def test_parse_setting_rejects(key, text):
    with pytest.raises(ValueError):
        parse_setting(key, text)
