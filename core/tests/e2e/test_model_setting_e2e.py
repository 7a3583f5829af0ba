"""`!model` on a plugin that declares a ``model`` setting: the core resolves and
stores it like any declared setting (Generator.model_for / set_model), so `!model`,
`!config` and the environment agree; and `!config`'s check_setting learns the scope
(a bot-wide value is checked with no server)."""

from __future__ import annotations

from typing import Any

import hark
from hark import GenerationRequest, Generator
from hark.testing.harness import BotHarness


class ModelSettings(hark.Settings):
    model: str = hark.setting(
        "small", env="DEMO_LLM_MODEL", pattern=r"^[a-z0-9.-]+$", description="the model"
    )


class DemoGenerator(Generator):
    """Says which model answers; checks models against its own list."""

    supports_model_listing = True

    def __init__(self) -> None:
        super().__init__()
        self.checks: list[dict[str, Any]] = []
        self.models_seen: list[str] = []

    async def _list_models_impl(self) -> list[str]:
        return ["small", "large", "huge"]

    async def check_setting(self, key: str, value: Any, **where: Any) -> Any:
        self.checks.append({"key": key, "value": value, **where})
        return value

    async def _impl(self, request: GenerationRequest):
        assert isinstance(request.settings, ModelSettings)
        self.models_seen.append(request.model)
        yield f"model {request.model} answering"


def demo_plugin(generator: DemoGenerator) -> hark.Plugin:
    return hark.Plugin(
        description="Demo LLM", settings=ModelSettings, providers=[lambda: generator]
    )


async def test_model_command_reads_and_writes_the_declared_setting(tmp_path, monkeypatch):
    generator = DemoGenerator()
    async with BotHarness(tmp_path, plugins={"demo_llm": demo_plugin(generator)}) as h:
        shown = await h.ask("!model")
        assert "uses model `small`" in shown.content

        done = await h.ask("!model large", author=h.admin)
        assert "now uses model `large`" in done.content
        # Stored as the declared setting of this server: !config shows it with its origin.
        config = await h.ask("!config demo_llm", author=h.admin)
        assert "large" in config.content and "server" in config.content.lower()
        answer = await h.ask(f"<@{h.bot.user.id}> hi")
        assert "model large answering" in answer.content
        assert generator.models_seen[-1] == "large"

        # The environment is a layer below the server's choice, above the default.
        monkeypatch.setenv("DEMO_LLM_MODEL", "huge")
        assert generator.model_for(None) == "huge"
        assert generator.model_for(h.guild.id) == "large"

        # Resetting the server's choice brings back what the layers below give.
        await generator.set_model(h.guild.id, None)
        assert generator.model_for(h.guild.id) == "huge"


async def test_check_setting_gets_the_scope_and_no_server_for_a_bot_wide_value(tmp_path):
    generator = DemoGenerator()
    async with BotHarness(tmp_path, plugins={"demo_llm": demo_plugin(generator)}) as h:
        await h.ask("!config demo_llm model large", author=h.admin)
        await h.ask("!config demo_llm model huge --global", author=h.server.owner)
        assert generator.checks == [
            {"key": "model", "value": "large", "guild_id": h.guild.id, "scope": "server"},
            {"key": "model", "value": "huge", "guild_id": None, "scope": "global"},
        ]
        assert generator.model_for(None) == "huge"
        assert generator.model_for(h.guild.id) == "large"
