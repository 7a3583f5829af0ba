"""Declared (v2) plugins: the PluginManager registers a ``hark.Plugin``'s providers and
Cogs through the hooks, keeps the declaration; provider calls carry the resolved
settings to a declared plugin's ``_impl`` (and v1 providers keep their signature)."""

from __future__ import annotations

import sys
import types
from collections.abc import AsyncIterator
from importlib.metadata import EntryPoint

import pytest

import hark
from hark import AudioClip, ContextPart, ContextRequest, PluginCog, PromptMessage, hookimpl
from hark.plugins import PluginManager
from hark.providers import Capability, Transcript
from hark.testing.fakes import FakeSynthesizer


class Voice(hark.Settings):
    voice: str = hark.setting("amber", env="DECL_VOICE", description="the voice")
    rate: float = hark.setting(1.0, ge=0.5, le=2.0, description="speed")


class DeclaredSynth(hark.Synthesizer):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Voice] = []

    async def _impl(
        self, text: str, *, guild_id: int | None, settings: Voice
    ) -> AsyncIterator[AudioClip]:
        self.seen.append(settings)
        yield AudioClip(b"\0\0" * 480, 48_000, 1)


class DeclaredTranscriber(hark.Transcriber):
    async def _impl(self, clip, *, language, prompt, guild_id, settings: Voice) -> Transcript:
        return Transcript(text=f"{settings.voice} {settings.rate}")


class DeclaredContext(hark.ContextProvider):
    async def _impl(self, request: ContextRequest, *, settings: Voice) -> ContextPart:
        return ContextPart([PromptMessage("system", settings.voice)])


class DeclaredGenerator(hark.Generator):
    async def _impl(self, request):
        yield f"{request.settings.voice}/{request.channel_id}"


class ExtraContext(hark.ContextProvider):
    name = "extra"

    async def _impl(self, request: ContextRequest) -> ContextPart | None:
        return None


class Hooks:
    @hookimpl
    def register_context_providers(self, register):
        register(ExtraContext())


class DeclaredCog(PluginCog):
    pass


def declared(**kwargs) -> hark.Plugin:
    options = {
        "description": "A declared test plugin",
        "settings": Voice,
        "secrets": [hark.Secret("DECL_KEY", "a key"), hark.Secret("DECL_OPT", required=False)],
        "providers": [DeclaredSynth, DeclaredTranscriber, DeclaredContext, DeclaredGenerator],
        "cogs": [DeclaredCog],
        "hooks": Hooks(),
        "default_enabled": False,
        "prepare": lambda: "ready",
    }
    return hark.Plugin(**{**options, **kwargs})


def test_a_declared_plugin_registers_through_the_hooks(monkeypatch) -> None:
    monkeypatch.delenv("DECL_KEY", raising=False)
    plugin = declared()
    manager = PluginManager()
    info = manager.add(plugin, "decl")
    assert info.loaded, info.error
    assert info.plugin is plugin and info.description == "A declared test plugin"
    assert info.default_enabled is False and info.prepare() == "ready"
    assert sorted(p.capability.value for p in info.providers) == [
        "context",
        "context",
        "generate",
        "synthesize",
        "transcribe",
    ]
    assert all(p.plugin_id == "decl" and p.declaration is plugin for p in info.providers)
    assert info.cogs == [DeclaredCog]
    assert "register_synthesizers" in info.hooks and "register_cogs" in info.hooks
    assert info.missing_secrets == ["DECL_KEY"]  # the optional one is not "needed"
    listing = info.as_dict()
    assert listing["needs"] == ["DECL_KEY"] and listing["settings"] == ["voice", "rate"]
    monkeypatch.setenv("DECL_KEY", "s3cr3t-value-123")
    assert info.missing_secrets == []
    assert "s3cr3t-value-123" not in repr(info.as_dict())
    # A second bot (a second manager) gets its own provider instances.
    other = PluginManager().add(plugin, "decl")
    assert not set(map(id, other.providers)) & set(map(id, info.providers))


def test_entry_points_to_a_plugin_object_or_its_module(monkeypatch) -> None:
    module = types.ModuleType("hark_decl_test_module")
    module.plugin = declared(hooks=None)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    manager = PluginManager()
    manager.load_entry_points(
        [
            EntryPoint("by_object", f"{module.__name__}:plugin", "hark"),
            EntryPoint("by_module", module.__name__, "hark"),
        ]
    )
    for plugin_id in ("by_object", "by_module"):
        info = manager.get(plugin_id)
        assert info.loaded and info.plugin is module.plugin, info.error


def test_declaration_mistakes_are_load_errors() -> None:
    manager = PluginManager()
    info = manager.add(declared(id="other"), "decl")
    assert info.status == "error" and "declares id 'other'" in info.error
    info = manager.add(declared(providers=[object]), "bad_provider")
    assert info.status == "error" and "not a provider" in info.error
    assert manager.add(declared(), "decl").loaded  # nothing was left registered
    with pytest.raises(TypeError, match=r"hark.Secret"):
        hark.Plugin(description="x", secrets=["KEY"])


def test_secret_values_come_from_the_environment_and_never_show() -> None:
    secret = hark.Secret("DECL_TOKEN", "a token")
    assert secret.value({"DECL_TOKEN": "  abc-123-xyz  "}) == "abc-123-xyz"
    assert not secret.is_set({}) and secret.is_set({"DECL_TOKEN": "x"})
    assert repr(secret) == "Secret('DECL_TOKEN')"
    from hark.logs import redact

    assert redact("key abc-123-xyz here") == "key *** here"


async def test_calls_carry_the_servers_settings(hark_settings_store, monkeypatch) -> None:
    monkeypatch.setenv("DECL_VOICE", "from-env")
    info = PluginManager().add(declared(), "decl")
    store = hark_settings_store
    for provider in info.providers:
        provider.bind(store.for_plugin("decl"))
    await store.set_value("decl", "voice", "srv", "server", 5)
    await store.set_value("decl", "rate", 1.5, "channel", 6)
    synth, transcriber, context, generator = (
        next(p for p in info.providers if isinstance(p, kind))
        for kind in (DeclaredSynth, DeclaredTranscriber, DeclaredContext, DeclaredGenerator)
    )

    [_ async for _ in synth.synthesize("hi", guild_id=5, channel_id=6)]
    [_ async for _ in synth.synthesize("hi")]
    assert [(s.voice, s.rate) for s in synth.seen] == [("srv", 1.5), ("from-env", 1.0)]
    clip = AudioClip(b"\0\0" * 160, 16_000, 1)
    assert (await transcriber.transcribe(clip, guild_id=5)).text == "srv 1.0"
    part = await context.provide(ContextRequest("hi", guild_id=5, channel_id=6))
    assert part.messages[0].content == "srv"
    assert await generator.complete([PromptMessage("user", "hi")], guild_id=5, channel_id=6) == (
        "srv/6"
    )
    # The same values, with their origins, for the plugin's own code.
    resolved = synth.resolve(5, 6)
    assert str(resolved.origin("voice")) == "this server"
    assert str(resolved.origin("rate")) == "this channel"


async def test_undeclared_providers_keep_their_signature() -> None:
    synth = FakeSynthesizer()  # _impl(text, *, voice, guild_id): no settings keyword
    assert synth.resolve(1) is None
    clips = [c async for c in synth.synthesize("Hello there.", guild_id=1)]
    assert clips and synth.texts == ["Hello there."]
    manager = PluginManager()
    manager.add(types.SimpleNamespace(), "empty")  # a v1 object with no hooks at all
    assert manager.get("empty").loaded and manager.get("empty").plugin is None
    assert manager.providers(Capability.SYNTHESIZE) == []
