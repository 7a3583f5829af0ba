"""`!openrouter` and `!config llm_openrouter` end to end: the real bot and discord.py
against the loopback Discord server, the plugin's generator against the loopback
OpenAI-compatible server."""

from __future__ import annotations

import json

import hark_llm_openrouter as plugin
import pytest
from fake_openai_chat import FakeOpenAIServer
from hark_llm_openrouter import OpenRouterGenerator
from openrouter_support import KEY, PLUGIN_ID

from hark import PromptMessage
from hark.store import SQLiteDatabase
from hark.testing.harness import BotHarness


@pytest.fixture
def openrouter_env(server, monkeypatch):
    """The plugin reads its configuration from the environment when the bot loads it."""
    monkeypatch.setenv("OPENROUTER_API_KEY", KEY)
    monkeypatch.setenv("OPENROUTER_BASE_URL", server.base_url)
    monkeypatch.delenv("OPENROUTER_MODEL", raising=False)
    return server


@pytest.fixture
async def harness(openrouter_env, hark_harness_factory):
    return await hark_harness_factory(plugins={PLUGIN_ID: plugin})


def bot_generator(h: BotHarness) -> OpenRouterGenerator:
    (generator,) = h.providers(PLUGIN_ID)
    assert isinstance(generator, OpenRouterGenerator)
    return generator


# Each test walks through a conversation of several commands with one bot.


async def test_status_and_model_listing(harness, server):
    reply = await harness.ask("!openrouter")
    assert server.base_url in reply.content
    assert "`openai/gpt-4o-mini`" in reply.content
    assert "API key: set" in reply.content
    assert "temperature 0.7" in reply.content
    assert KEY not in reply.content and KEY[:12] not in reply.content

    reply = await harness.ask("!openrouter models")
    lines = reply.content.splitlines()
    assert f"of {len(server.models)}" in lines[0]
    assert "`openai/gpt-4o-mini` ← this server" in lines
    for model in server.models:
        assert f"`{model}`" in reply.content
    assert server.requests[-1].path == "/v1/models"
    assert server.requests[-1].bearer == KEY

    reply = await harness.ask("!openrouter models LLAMA")
    assert "`meta-llama/llama-3.1-8b-instruct`" in reply.content
    assert "gpt-4o-mini" not in reply.content
    assert "1 of 4" in reply.content

    reply = await harness.ask("!openrouter models no-such-thing")
    assert "No model" in reply.content

    # A failure is one clear notice, without the key.
    server.fail_next(401, endpoint="models")
    reply = await harness.ask("!openrouter models")
    assert "rejected the bot's credentials" in reply.content
    assert KEY not in reply.content

    # Long lists are capped (a filter narrows them).
    server.models = [f"vendor/model-{i:03}" for i in range(60)]
    reply = await harness.ask("!openrouter models")
    assert "…and 20 more" in reply.content
    assert "not in this list" in reply.content  # this server's model is not offered there


async def test_changing_the_model_needs_manage_server(harness, server):
    guild_id = harness.guild.id
    generator = bot_generator(harness)

    reply = await harness.ask("!config llm_openrouter model anthropic/claude-3.5-haiku")
    assert "Manage Server" in reply.content
    assert generator.model_for(guild_id) == "openai/gpt-4o-mini"

    reply = await harness.ask("!config llm_openrouter model nobody/nothing", author=harness.admin)
    assert reply.content == (
        f"Nothing changed: `model`: {generator.host} has no model `nobody/nothing`;"
        " see `!openrouter models`."
    )
    assert generator.model_for(guild_id) == "openai/gpt-4o-mini"

    reply = await harness.ask(
        "!config llm_openrouter model anthropic/claude-3.5-haiku", author=harness.admin
    )
    assert reply.content == (
        "`llm_openrouter.model` is now `anthropic/claude-3.5-haiku` in this server."
    )
    assert generator.model_for(guild_id) == "anthropic/claude-3.5-haiku"

    reply = await harness.ask("!openrouter models")
    assert "`anthropic/claude-3.5-haiku` ← this server" in reply.content.splitlines()
    reply = await harness.ask("!openrouter")
    assert "Model: `anthropic/claude-3.5-haiku` (this server)" in reply.content

    # The bot's generator now asks for that model in this server only.
    await generator.complete([PromptMessage("user", "hi")], guild_id=guild_id)
    assert server.last_chat.model == "anthropic/claude-3.5-haiku"
    await generator.complete([PromptMessage("user", "hi")], guild_id=guild_id + 1)
    assert server.last_chat.model == "openai/gpt-4o-mini"

    # It survives a restart (stored in the bot's database).
    await harness.restart()
    assert bot_generator(harness).model_for(guild_id) == "anthropic/claude-3.5-haiku"
    await generator.aclose()

    reply = await harness.ask("!config llm_openrouter model reset", author=harness.admin)
    assert reply.content == (
        "`llm_openrouter.model` is back to `openai/gpt-4o-mini` (default) in this server."
    )
    assert bot_generator(harness).model_for(guild_id) == "openai/gpt-4o-mini"

    # While the model list can't be fetched, a name is taken unchecked (as before).
    server.fail_next(503, times=10, endpoint="models")
    reply = await harness.ask("!config llm_openrouter model vendor/new-model", author=harness.admin)
    assert reply.content == "`llm_openrouter.model` is now `vendor/new-model` in this server."


async def test_sampling_settings_and_plugin_switch(harness):
    generator = bot_generator(harness)
    guild_id = harness.guild.id

    def setting(key):
        return getattr(generator.resolve(guild_id).values, key)

    reply = await harness.ask("!config llm_openrouter temperature 0.3")
    assert "Manage Server" in reply.content

    reply = await harness.ask("!config llm_openrouter temperature 0.3", author=harness.admin)
    assert reply.content == "`llm_openrouter.temperature` is now `0.3` in this server."
    assert setting("temperature") == 0.3

    reply = await harness.ask("!config llm_openrouter temperature 9", author=harness.admin)
    assert reply.content == "Nothing changed: `temperature` must be a number between 0 and 2."
    reply = await harness.ask("!config llm_openrouter max_tokens lots", author=harness.admin)
    assert reply.content == (
        "Nothing changed: `max_tokens` must be a whole number between 1 and 1000000."
    )
    reply = await harness.ask("!config llm_openrouter colour blue", author=harness.admin)
    assert "there is no setting `colour`" in reply.content
    assert setting("temperature") == 0.3
    reply = await harness.ask("!config llm_openrouter top_p 0.9", author=harness.admin)
    assert "is now `0.9`" in reply.content
    reply = await harness.ask("!openrouter")
    assert "Settings: temperature 0.3, max_tokens 1024, top_p 0.9" in reply.content
    assert "`!config llm_openrouter`" in reply.content

    reply = await harness.ask("!config llm_openrouter temperature reset", author=harness.admin)
    assert reply.content == (
        "`llm_openrouter.temperature` is back to `0.7` (default) in this server."
    )
    assert setting("temperature") == 0.7

    # The endpoint is the owner's to set, bot-wide.
    reply = await harness.ask(
        "!config llm_openrouter base_url http://127.0.0.1:9/v1", author=harness.admin
    )
    assert "can't be set in this server; it can be set bot-wide (owner)" in reply.content

    # Disabled in this server, the plugin's commands act as if they did not exist.
    await harness.ask(f"!plugins disable {PLUGIN_ID}", author=harness.admin)
    await harness.say("!openrouter")
    await harness.expect_silence(within=0.5)


async def test_the_owner_moves_the_endpoint_bot_wide(harness, server):
    """A new base URL (or timeout, attribution) takes effect at the next request: the
    client is made again, and the old one is closed with the generator."""
    generator = bot_generator(harness)
    prompt = [PromptMessage("user", "hi")]
    await generator.complete(prompt, guild_id=harness.guild.id)
    first = generator.client()
    async with FakeOpenAIServer(api_key=KEY, reply="from the other one") as other:
        owner = harness.server.owner
        reply = await harness.ask(
            f"!config llm_openrouter base_url {other.base_url}/ --global", author=owner
        )
        assert reply.content == f"`llm_openrouter.base_url` is now `{other.base_url}` bot-wide."
        reply = await harness.ask("!config llm_openrouter app_name MyBot --global", author=owner)
        assert reply.content == "`llm_openrouter.app_name` is now `MyBot` bot-wide."
        assert await generator.complete(prompt, guild_id=harness.guild.id) == "from the other one"
        assert other.last_chat.headers["X-Title"] == "MyBot"
        assert generator.client() is not first
        reply = await harness.ask("!openrouter")
        assert f"Endpoint: `{other.base_url}`" in reply.content
        await generator.aclose()
    assert first.is_closed()


async def test_choices_stored_by_the_old_commands_are_kept(harness, server):
    """A database written by the plugin's old `!openrouter model` / `!openrouter set`
    commands (the same settings rows: namespace llm_openrouter, scope guild:<id> or
    global) keeps every server's choices."""
    guild_id, other = harness.guild.id, harness.guild.id + 1
    await harness.stop()
    db = SQLiteDatabase(harness.data_dir / "hark.sqlite3")
    await db.open()
    rows = [
        (f"guild:{guild_id}", "model", "anthropic/claude-3.5-haiku"),
        (f"guild:{guild_id}", "temperature", 0.3),
        (f"guild:{guild_id}", "max_tokens", 256),
        (f"guild:{guild_id}", "top_p", 0.5),
        (f"guild:{other}", "temperature", 1.5),
        ("global", "model", "meta-llama/llama-3.1-8b-instruct"),
    ]
    for scope, key, value in rows:  # exactly what SettingsStore.write used to insert
        await db.execute(
            "INSERT INTO settings (namespace, scope, key, value) VALUES (?, ?, ?, ?)",
            (PLUGIN_ID, scope, key, json.dumps(value)),
        )
    await db.close()
    await harness.start()

    generator = bot_generator(harness)
    await generator.complete([PromptMessage("user", "hi")], guild_id=guild_id)
    body = server.last_chat.body
    assert (body["model"], body["temperature"], body["max_tokens"], body["top_p"]) == (
        "anthropic/claude-3.5-haiku",
        0.3,
        256,
        0.5,
    )
    await generator.complete([PromptMessage("user", "hi")], guild_id=other)
    body = server.last_chat.body
    assert (body["model"], body["temperature"], body["max_tokens"]) == (
        "meta-llama/llama-3.1-8b-instruct",
        1.5,
        1024,
    )
    assert "top_p" not in body
    reply = await harness.ask("!config llm_openrouter")
    assert "`model` = `anthropic/claude-3.5-haiku` (this server)" in reply.content
    assert "`max_tokens` = `256` (this server)" in reply.content
    assert "secret `OPENROUTER_API_KEY`: set" in reply.content
    assert KEY not in reply.content
