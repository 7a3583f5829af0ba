"""``!ollama`` and ``!config llm_ollama`` end to end: the real bot on the loopback
Discord server, the real ``ollama`` client on the loopback fake Ollama server."""

from __future__ import annotations

import json
import logging

import hark_llm_ollama
import pytest
from fake_ollama import unused_url
from hark_llm_ollama import OllamaGenerator, OllamaSettings

from hark import Capability, SettingError
from hark.providers import RetryPolicy
from hark.settings import coerce
from hark.store import SQLiteDatabase
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
    shown = await harness.ask("!config llm_ollama model")
    assert shown.content.startswith("`llm_ollama.model` = `llama3.2` (default)")
    denied = await harness.ask("!config llm_ollama model qwen2.5:7b")
    assert "Manage Server" in denied.content
    assert generator(harness).model_for(harness.guild.id) == "llama3.2"

    ok = await harness.ask("!config llm_ollama model qwen2.5:7b", author=harness.admin)
    assert ok.content == "`llm_ollama.model` is now `qwen2.5:7b` in this server."
    assert generator(harness).model_for(harness.guild.id) == "qwen2.5:7b"
    # the name is stored as the Ollama server lists it (`llama3.2` is `llama3.2:latest`)
    ok = await harness.ask("!config llm_ollama model LLAMA3.2", author=harness.admin)
    assert ok.content == "`llm_ollama.model` is now `llama3.2:latest` in this server."
    await harness.ask("!config llm_ollama model qwen2.5:7b", author=harness.admin)

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
    shown = await harness.ask("!config llm_ollama")
    assert "`model` = `qwen2.5:7b` (this server)" in shown.content
    assert "secret `OLLAMA_API_KEY`: not set" in shown.content
    assert "(required)" not in shown.content

    reset = await harness.ask("!config llm_ollama model reset", author=harness.admin)
    assert reset.content == "`llm_ollama.model` is back to `llama3.2` (default) in this server."
    assert generator(harness).model_for(harness.guild.id) == "llama3.2"

    # where the Ollama server is, is the owner's to set, bot-wide
    refused = await harness.ask("!config llm_ollama host http://gpu:11434", author=harness.admin)
    assert "can't be set in this server; it can be set bot-wide (owner)" in refused.content


async def test_a_model_that_is_not_pulled_is_refused(harness):
    reply = await harness.ask("!config llm_ollama model mistral", author=harness.admin)
    assert reply.content == (
        "Nothing changed: `mistral` is not on the Ollama server; pull it there with"
        " `ollama pull mistral`, or pick one from `!ollama models`."
    )
    assert generator(harness).model_for(harness.guild.id) == "llama3.2"

    # set behind the command's back (the core's !model, or bot.toml): both listings say
    # what to do
    await generator(harness).set_model(harness.guild.id, "mistral")
    listing = (await harness.ask("!ollama models")).content
    assert "used here" not in listing
    assert "This server uses `mistral`, which is not on the server: `ollama pull mistral`" in (
        listing
    )
    status = (await harness.ask("!ollama")).content
    assert "Model here: `mistral` (this server)" in status
    assert "`mistral` is **not pulled**: run `ollama pull mistral` on the server" in status


async def test_status_and_options(harness, fake_ollama):
    await harness.ask("!config llm_ollama temperature 0.3", author=harness.admin)
    reply = await harness.ask("!config llm_ollama num_ctx 8192", author=harness.admin)
    assert reply.content == "`llm_ollama.num_ctx` is now `8192` in this server."
    bad = await harness.ask("!config llm_ollama num_ctx lots", author=harness.admin)
    assert bad.content == (
        "Nothing changed: `num_ctx` must be a whole number between 256 and 1048576."
    )
    denied = await harness.ask("!config llm_ollama temperature 1")
    assert "Manage Server" in denied.content
    reply = await harness.ask("!config llm_ollama think High", author=harness.admin)
    assert reply.content == "`llm_ollama.think` is now `high` in this server."
    reply = await harness.ask("!config llm_ollama keep_alive -1", author=harness.admin)
    assert reply.content == "`llm_ollama.keep_alive` is now `-1` in this server."

    status = (await harness.ask("!ollama")).content
    assert fake_ollama.url in status
    assert "Model here: `llama3.2` (default)" in status
    assert "temperature `0.3`" in status and "num_ctx `8192`" in status
    assert "keep_alive `-1`" in status and "think `high`" in status
    assert "reachable, 2 model(s); `llama3.2` is pulled" in status
    assert "Images sent: on · tools offered: on" in status
    assert "`!config llm_ollama`" in status

    await generator(harness).complete([], guild_id=harness.guild.id)
    body = fake_ollama.last_chat
    assert body["options"] == {"temperature": 0.3, "num_ctx": 8192}
    assert (body["keep_alive"], body["think"]) == (-1, "high")

    cleared = await harness.ask("!config llm_ollama temperature reset", author=harness.admin)
    assert cleared.content == ("`llm_ollama.temperature` is back to none (default) in this server.")
    await harness.ask("!config llm_ollama think off", author=harness.admin)
    await generator(harness).complete([], guild_id=harness.guild.id)
    assert fake_ollama.last_chat["options"] == {"num_ctx": 8192}
    assert fake_ollama.last_chat["think"] is False

    # autocomplete offers the choices of `think`
    h = harness
    choices = await h.server.invoke_autocomplete(
        h.guild,
        h.channel,
        h.admin,
        "config",
        {"plugin": "llm_ollama", "key": "think", "value": ""},
        "value",
    )
    assert [c["value"] for c in choices] == ["on", "off", "low", "medium", "high", "reset"]


async def test_when_the_server_is_down(harness, monkeypatch, caplog):
    down = unused_url()
    monkeypatch.setenv("OLLAMA_HOST", down)
    listing = await harness.ask("!ollama models")
    assert listing.content == f"Couldn't list the models: could not connect to Ollama at {down}."
    status = await harness.ask("!ollama")
    assert f"**Ollama** at `{down}`" in status.content
    assert f"Server: not reachable (could not connect to Ollama at {down})" in status.content
    # choosing a model still works while the server is away (unchecked, logged)
    with caplog.at_level(logging.WARNING):
        chosen = await harness.ask("!config llm_ollama model qwen2.5:7b", author=harness.admin)
    assert chosen.content == "`llm_ollama.model` is now `qwen2.5:7b` in this server."
    assert "took model 'qwen2.5:7b' unchecked" in caplog.text


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


async def test_choices_stored_by_the_old_commands_are_kept(harness, fake_ollama):
    """A database written by the plugin's old `!ollama model` / `!ollama set` commands
    (the same settings rows: namespace llm_ollama, scope guild:<id> or global, values
    as those commands parsed them) keeps every server's choices."""
    guild_id, other = harness.guild.id, harness.guild.id + 1
    await harness.stop()
    db = SQLiteDatabase(harness.data_dir / "hark.sqlite3")
    await db.open()
    rows = [
        (f"guild:{guild_id}", "model", "qwen2.5:7b"),
        (f"guild:{guild_id}", "temperature", 0.3),
        (f"guild:{guild_id}", "num_ctx", 8192),
        (f"guild:{guild_id}", "keep_alive", -1),
        (f"guild:{guild_id}", "think", True),
        (f"guild:{other}", "keep_alive", "1h30m"),
        (f"guild:{other}", "think", "low"),
        ("global", "model", "llama3.2:latest"),
    ]
    for scope, key, value in rows:  # exactly what SettingsStore.write used to insert
        await db.execute(
            "INSERT INTO settings (namespace, scope, key, value) VALUES (?, ?, ?, ?)",
            ("llm_ollama", scope, key, json.dumps(value)),
        )
    await db.close()
    await harness.start()

    gen = generator(harness)
    await gen.complete([], guild_id=guild_id)
    body = fake_ollama.last_chat
    assert (body["model"], body["options"]) == ("qwen2.5:7b", {"temperature": 0.3, "num_ctx": 8192})
    assert (body["keep_alive"], body["think"]) == (-1, True)
    await gen.complete([], guild_id=other)
    body = fake_ollama.last_chat
    assert (body["model"], body["keep_alive"], body["think"]) == ("llama3.2:latest", "1h30m", "low")
    assert "options" not in body
    reply = await harness.ask("!config llm_ollama")
    assert "`model` = `qwen2.5:7b` (this server)" in reply.content
    assert "`think` = `on` (this server)" in reply.content
    assert "`keep_alive` = `-1` (this server)" in reply.content


@pytest.mark.parametrize(
    ("key", "text", "value"),
    [
        ("temperature", "0.7", 0.7),
        ("num_ctx", "4096", 4096),
        ("keep_alive", "10m", "10m"),
        ("keep_alive", "1h30m", "1h30m"),
        ("keep_alive", "-1", "-1"),  # sent to Ollama as the number -1
        ("think", "off", False),
        ("think", "ON", True),
        ("think", "high", "high"),
        ("temperature", "none", None),
        ("vision", "off", False),
        ("tools", "on", True),
    ],
)
def test_values_typed_in_chat(key, text, value):
    assert coerce(OllamaSettings, key, text) == value


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("temperature", "hot"),
        ("temperature", "3"),
        ("temperature", "nan"),
        ("num_ctx", "12"),
        ("keep_alive", "forever"),
        ("think", "maybe"),
        ("timeout", "0"),
        ("tools", "maybe"),
        ("colour", "blue"),
    ],
)
def test_values_refused_in_one_line(key, text):
    with pytest.raises(SettingError) as caught:
        coerce(OllamaSettings, key, text)
    assert f"`{key}`" in str(caught.value) and "\n" not in str(caught.value)
