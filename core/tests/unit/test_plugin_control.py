"""hark.control.PluginControl with a real PluginManager, real SQLite state and in-memory plugins."""

from __future__ import annotations

import types
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hark import hookimpl
from hark.config import Config
from hark.control import ControlError, PluginControl, parse_capability
from hark.plugins import PluginManager
from hark.providers import Capability
from hark.store import GLOBAL, PluginState, SQLiteDatabase
from hark.testing.fakes import (
    FakeContextProvider,
    FakeGenerator,
    FakeSynthesizer,
    FakeTranscriber,
    fake_plugin,
)

G1, G2 = 111, 222
GEN = Capability.GENERATE


def core_module() -> types.ModuleType:
    module = types.ModuleType("fake_core", "Core: plugin management.")

    @hookimpl
    def register_context_providers(register):
        register(FakeContextProvider("You are Hark.", order=0))

    module.register_context_providers = register_context_providers  # type: ignore[attr-defined]
    return module


@pytest.fixture
async def state(tmp_path: Path) -> AsyncIterator[PluginState]:
    db = SQLiteDatabase(tmp_path / "hark.sqlite3")
    await db.open()
    state = PluginState(db)
    await state.load()
    yield state
    await db.close()


def make_control(state: PluginState, config: Config | None = None, **plugins) -> PluginControl:
    manager = PluginManager()
    manager.add(core_module(), "core", protected=True)
    for plugin_id, module in plugins.items():
        manager.add(module, plugin_id)
    return PluginControl(manager, state, config)


# -- enabling ------------------------------------------------------------------


async def test_enable_and_disable_per_guild(state: PluginState) -> None:
    control = make_control(state, tts=fake_plugin(FakeSynthesizer()))
    assert control.is_enabled("tts", G1) and control.is_enabled("tts", None)
    info = await control.set_enabled("tts", G1, False)
    assert info.id == "tts"
    assert not control.is_enabled("tts", G1)
    assert control.is_enabled("tts", G2), "another server is not affected"
    assert control.candidates(Capability.SYNTHESIZE, G1) == []
    assert control.provider_for(Capability.SYNTHESIZE, G1) is None
    assert control.provider_for(Capability.SYNTHESIZE, G2) is not None
    await control.set_enabled("tts", G1, True)
    assert control.is_enabled("tts", G1)


async def test_global_default_and_server_override(state: PluginState) -> None:
    control = make_control(state, twitch=fake_plugin(FakeContextProvider("live")))
    await control.set_enabled("twitch", G1, True)
    await control.set_enabled("twitch", GLOBAL, False)
    assert not control.is_enabled("twitch", G2), "the owner's default applies"
    assert not control.is_enabled("twitch", None)
    assert control.is_enabled("twitch", G1), "a server's own switch wins"


async def test_plugin_default_enabled_false(state: PluginState) -> None:
    control = make_control(state, opt=fake_plugin(FakeGenerator(), default_enabled=False))
    assert not control.is_enabled("opt", G1)
    await control.set_enabled("opt", GLOBAL, True)
    assert control.is_enabled("opt", G1)


async def test_state_survives_a_restart(tmp_path: Path) -> None:
    db = SQLiteDatabase(tmp_path / "db.sqlite3")
    await db.open()
    state = PluginState(db)
    control = make_control(state, a=fake_plugin(FakeGenerator()), b=fake_plugin(FakeGenerator()))
    await control.set_enabled("a", G1, False)
    await control.choose(GEN, "b", G2)
    await db.close()
    await db.open()
    try:
        state2 = PluginState(db)
        await state2.load()
        control2 = make_control(
            state2, a=fake_plugin(FakeGenerator()), b=fake_plugin(FakeGenerator())
        )
        assert not control2.is_enabled("a", G1)
        assert control2.provider_for(GEN, G2).plugin_id == "b"
    finally:
        await db.close()


async def test_protected_plugin_cannot_be_disabled(state: PluginState) -> None:
    control = make_control(state)
    with pytest.raises(ControlError, match="can't be disabled"):
        await control.set_enabled("core", G1, False)
    await state.set_enabled(G1, "core", False)  # even a stray row does not switch it off
    assert control.is_enabled("core", G1)
    assert [p.plugin_id for p in control.context_providers(G1)] == ["core"]


async def test_unknown_plugin_is_a_helpful_error(state: PluginState) -> None:
    control = make_control(state, tts=fake_plugin(FakeSynthesizer()))
    with pytest.raises(ControlError) as caught:
        await control.set_enabled("ttz", G1, False)
    message = str(caught.value)
    assert "`ttz`" in message and "core, tts" in message
    assert not control.is_enabled("ttz", G1)


async def test_plugins_that_did_not_load_cannot_be_switched(state: PluginState) -> None:
    broken = types.ModuleType("broken")

    @hookimpl
    def register_generators(register):
        raise RuntimeError("no model")

    broken.register_generators = register_generators  # type: ignore[attr-defined]
    control = make_control(state, broken=broken)
    assert control.manager.get("broken").status == "error"
    assert not control.is_enabled("broken", G1)
    with pytest.raises(ControlError, match="not loaded") as caught:
        await control.set_enabled("broken", G1, True)
    assert "no model" in str(caught.value)


async def test_blocked_plugin_is_off(state: PluginState) -> None:
    manager = PluginManager(block=["tts"])
    manager.add(fake_plugin(FakeSynthesizer()), "tts")
    control = PluginControl(manager, state)
    assert not control.is_enabled("tts", G1)
    with pytest.raises(ControlError, match="blocked"):
        await control.set_enabled("tts", G1, True)


# -- choosing providers --------------------------------------------------------


async def test_provider_choice_per_guild_with_fallback(state: PluginState) -> None:
    control = make_control(
        state, alpha=fake_plugin(FakeGenerator("a")), beta=fake_plugin(FakeGenerator("b"))
    )
    assert control.provider_for(GEN, G1).plugin_id == "alpha", "ranked by id"
    assert control.chosen(GEN, G1) == (None, "auto")
    chosen = await control.choose(GEN, "beta", G1)
    assert chosen.id == "beta"
    assert control.chosen(GEN, G1) == ("beta", "server")
    assert control.provider_for(GEN, G1).plugin_id == "beta"
    assert control.provider_for(GEN, G2).plugin_id == "alpha"
    await control.set_enabled("beta", G1, False)
    assert control.provider_for(GEN, G1).plugin_id == "alpha", "falls back when disabled"
    await control.set_enabled("beta", G1, True)
    assert control.provider_for(GEN, G1).plugin_id == "beta", "the choice was kept"


async def test_global_and_configured_choices(state: PluginState) -> None:
    config = Config(default_providers={"generate": "beta"})
    control = make_control(
        state,
        config,
        alpha=fake_plugin(FakeGenerator()),
        beta=fake_plugin(FakeGenerator()),
        gamma=fake_plugin(FakeGenerator()),
    )
    assert control.chosen(GEN, G1) == ("beta", "config")
    assert control.provider_for(GEN, G1).plugin_id == "beta"
    await control.choose(GEN, "gamma", GLOBAL)
    assert control.chosen(GEN, G1) == ("gamma", "global")
    assert control.provider_for(GEN, None).plugin_id == "gamma"
    await control.choose(GEN, "alpha", G1)
    assert control.provider_for(GEN, G1).plugin_id == "alpha"
    assert control.provider_for(GEN, G2).plugin_id == "gamma"


async def test_choice_of_an_uninstalled_provider_falls_back(state: PluginState) -> None:
    control = make_control(state, alpha=fake_plugin(FakeGenerator()))
    await state.set_choice(G1, GEN.value, "gone")
    assert control.provider_for(GEN, G1).plugin_id == "alpha"


async def test_default_priority_and_unavailable_reason_rank_defaults(state: PluginState) -> None:
    control = make_control(
        state,
        alpha=fake_plugin(FakeSynthesizer()),
        zeta=fake_plugin(FakeSynthesizer(default_priority=10)),
    )
    assert control.provider_for(Capability.SYNTHESIZE, G1).plugin_id == "zeta"

    control = make_control(
        state,
        alpha=fake_plugin(FakeSynthesizer()),
        zeta=fake_plugin(FakeSynthesizer(default_priority=10, unavailable="AZURE_KEY is not set")),
    )
    assert control.provider_for(Capability.SYNTHESIZE, G1).plugin_id == "alpha"

    control = make_control(
        state,
        alpha=fake_plugin(FakeSynthesizer(unavailable="no key")),
        zeta=fake_plugin(FakeSynthesizer(unavailable="no key", default_priority=-1)),
    )
    picked = control.provider_for(Capability.SYNTHESIZE, G1)
    assert picked is not None and picked.plugin_id == "alpha", "unavailable beats nothing"


async def test_explicit_choice_beats_ranking(state: PluginState) -> None:
    control = make_control(
        state,
        local=fake_plugin(FakeSynthesizer(default_priority=-10)),
        cloud=fake_plugin(FakeSynthesizer(default_priority=10)),
    )
    await control.choose(Capability.SYNTHESIZE, "local", G1)
    assert control.provider_for(Capability.SYNTHESIZE, G1).plugin_id == "local"


async def test_find_by_provider_id_or_unambiguous_plugin_id(state: PluginState) -> None:
    control = make_control(
        state,
        multi=fake_plugin(FakeGenerator(name="fast"), FakeGenerator(name="smart")),
        single=fake_plugin(FakeGenerator(name="only")),
    )
    assert control.find(GEN, "multi:smart").id == "multi:smart"
    assert control.find(GEN, "single").id == "single:only"
    # several providers of one kind: the plugin id picks its best (usable, priority, id)
    assert control.find(GEN, "multi").id == "multi:fast"
    assert control.find(GEN, "nope") is None
    provider = await control.choose(GEN, "multi:fast", G1)
    assert state.choice(G1, "generate") == "multi:fast"
    assert control.provider_for(GEN, G1) is provider


async def test_choose_errors_are_helpful(state: PluginState) -> None:
    control = make_control(
        state, alpha=fake_plugin(FakeGenerator()), stt=fake_plugin(FakeTranscriber())
    )
    with pytest.raises(ControlError) as caught:
        await control.choose(GEN, "stt", G1)
    assert "No generate provider called `stt`" in str(caught.value)
    assert "Available: alpha" in str(caught.value)
    with pytest.raises(ControlError, match="none installed"):
        await control.choose(Capability.SYNTHESIZE, "x", G1)
    with pytest.raises(ControlError, match="not a choice"):
        await control.choose(Capability.CONTEXT, "core", G1)
    await control.set_enabled("alpha", G1, False)
    with pytest.raises(ControlError, match="enable it first"):
        await control.choose(GEN, "alpha", G1)
    assert state.choice(G1, "generate") is None


async def test_provider_for_context_is_refused(state: PluginState) -> None:
    control = make_control(state)
    with pytest.raises(ValueError):
        control.provider_for(Capability.CONTEXT, G1)


async def test_context_providers_follow_the_switches(state: PluginState) -> None:
    control = make_control(
        state,
        memory=fake_plugin(FakeContextProvider("m")),
        twitch=fake_plugin(FakeContextProvider("t"), FakeGenerator(name="chat")),
    )
    assert [p.plugin_id for p in control.context_providers(G1)] == ["core", "memory", "twitch"]
    await control.set_enabled("twitch", G1, False)
    assert [p.plugin_id for p in control.context_providers(G1)] == ["core", "memory"]
    assert [p.plugin_id for p in control.context_providers(G2)] == ["core", "memory", "twitch"]


# -- parse_capability ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "capability"),
    [
        ("generate", Capability.GENERATE),
        ("llm", Capability.GENERATE),
        ("LLM", Capability.GENERATE),
        ("generation", Capability.GENERATE),
        ("stt", Capability.TRANSCRIBE),
        ("transcribe", Capability.TRANSCRIBE),
        ("transcription", Capability.TRANSCRIBE),
        ("tts", Capability.SYNTHESIZE),
        ("synthesis", Capability.SYNTHESIZE),
        ("speech", Capability.SYNTHESIZE),
        ("Synthesize", Capability.SYNTHESIZE),
    ],
)
def test_parse_capability_aliases(text: str, capability: Capability) -> None:
    assert parse_capability(text) is capability


def test_parse_capability_errors() -> None:
    with pytest.raises(ControlError) as caught:
        parse_capability("brain")
    assert "`brain`" in str(caught.value)
    assert "transcribe, generate, synthesize" in str(caught.value)
    with pytest.raises(ControlError, match="nothing to choose"):
        parse_capability("context")


async def test_find_accepts_the_plugin_id_without_its_kind_prefix(state: PluginState) -> None:
    control = make_control(
        state,
        llm_openrouter=fake_plugin(FakeGenerator()),
        llm_ollama=fake_plugin(FakeGenerator()),
    )
    assert control.find(GEN, "openrouter").plugin_id == "llm_openrouter"
    assert control.find(GEN, "ollama").plugin_id == "llm_ollama"
    assert control.find(GEN, "llm") is None
