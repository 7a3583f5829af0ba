"""`!openrouter` end to end: the real bot and discord.py against the loopback Discord
server, the plugin's generator against the loopback OpenAI-compatible server."""

from __future__ import annotations

import hark_llm_openrouter as plugin
import pytest
from hark_llm_openrouter import OpenRouterGenerator
from openrouter_support import KEY, PLUGIN_ID

from hark import PromptMessage
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

    reply = await harness.ask("!openrouter model anthropic/claude-3.5-haiku")
    assert "Manage Server" in reply.content
    assert generator.model_for(guild_id) == "openai/gpt-4o-mini"

    reply = await harness.ask("!openrouter model nobody/nothing", author=harness.admin)
    assert "has no model `nobody/nothing`" in reply.content
    assert generator.model_for(guild_id) == "openai/gpt-4o-mini"

    reply = await harness.ask("!openrouter model anthropic/claude-3.5-haiku", author=harness.admin)
    assert "now uses `anthropic/claude-3.5-haiku`" in reply.content
    assert generator.model_for(guild_id) == "anthropic/claude-3.5-haiku"

    reply = await harness.ask("!openrouter models")
    assert "`anthropic/claude-3.5-haiku` ← this server" in reply.content.splitlines()
    reply = await harness.ask("!openrouter model")
    assert "`anthropic/claude-3.5-haiku` (set for this server)" in reply.content

    # The bot's generator now asks for that model in this server only.
    await generator.complete([PromptMessage("user", "hi")], guild_id=guild_id)
    assert server.last_chat.model == "anthropic/claude-3.5-haiku"
    await generator.complete([PromptMessage("user", "hi")], guild_id=guild_id + 1)
    assert server.last_chat.model == "openai/gpt-4o-mini"

    # It survives a restart (stored in the bot's database).
    await harness.restart()
    assert bot_generator(harness).model_for(guild_id) == "anthropic/claude-3.5-haiku"
    await generator.aclose()

    reply = await harness.ask("!openrouter model reset", author=harness.admin)
    assert "back to `openai/gpt-4o-mini`" in reply.content
    assert bot_generator(harness).model_for(guild_id) == "openai/gpt-4o-mini"


async def test_sampling_settings_and_plugin_switch(harness):
    generator = bot_generator(harness)
    guild_id = harness.guild.id

    reply = await harness.ask("!openrouter set temperature 0.3")
    assert "Manage Server" in reply.content

    reply = await harness.ask("!openrouter set temperature 0.3", author=harness.admin)
    assert "temperature is now 0.3" in reply.content
    assert generator.setting("temperature", guild_id) == 0.3

    reply = await harness.ask("!openrouter set temperature 9", author=harness.admin)
    assert "between 0 and 2" in reply.content
    reply = await harness.ask("!openrouter set max_tokens lots", author=harness.admin)
    assert "not a number" in reply.content
    reply = await harness.ask("!openrouter set colour blue", author=harness.admin)
    assert "not a setting" in reply.content
    assert generator.setting("temperature", guild_id) == 0.3

    reply = await harness.ask("!openrouter set temperature reset", author=harness.admin)
    assert "back to 0.7" in reply.content
    assert generator.setting("temperature", guild_id) == 0.7

    # Disabled in this server, the plugin's commands act as if they did not exist.
    await harness.ask(f"!plugins disable {PLUGIN_ID}", author=harness.admin)
    await harness.say("!openrouter")
    await harness.expect_silence(within=0.5)
