"""hark.plugins.PluginManager: discovery, validation, allow/block lists, listing."""

from __future__ import annotations

import itertools
import sys
import textwrap
import types
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from discord.ext import commands

from hark import hookimpl
from hark.plugins import PluginManager
from hark.providers import Capability
from hark.testing.fakes import (
    FakeContextProvider,
    FakeGenerator,
    FakeSynthesizer,
    FakeTranscriber,
    fake_plugin,
)

_counter = itertools.count()


@pytest.fixture
def make_module(tmp_path: Path, monkeypatch) -> Iterator[Callable[[str], str]]:
    """Write an importable module; returns its (unique) name. Unimported afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    names: list[str] = []

    def make(source: str) -> str:
        name = f"hark_test_plugin_{next(_counter)}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        names.append(name)
        return name

    yield make
    for name in names:
        sys.modules.pop(name, None)


GOOD_PLUGIN = '''
    """Says hello. More text here."""
    from hark import hookimpl
    from hark.testing.fakes import FakeGenerator

    DEFAULT_ENABLED = False

    @hookimpl
    def register_generators(register):
        register(FakeGenerator("hello"))

    def prepare():
        return "ready"
'''


def ep(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group="hark")


def module_with(**hooks) -> types.ModuleType:
    module = types.ModuleType("inline_plugin", "An inline plugin.")
    for name, fn in hooks.items():
        setattr(module, name, hookimpl(fn))
    return module


# -- entry points --------------------------------------------------------------


def test_entry_points_load_and_broken_imports_are_listed(make_module) -> None:
    good = make_module(GOOD_PLUGIN)
    crashing = make_module("raise RuntimeError('model file missing')\n")
    manager = PluginManager()
    manager.load_entry_points(
        [
            ep("hello", good),
            ep("ghost", "nonexistent_mod_xyz"),
            ep("crashy", crashing),
        ]
    )
    assert sorted(manager.plugins) == ["crashy", "ghost", "hello"]

    ghost = manager.get("ghost")
    assert ghost.status == "error" and not ghost.loaded
    assert "ModuleNotFoundError" in ghost.error and "nonexistent_mod_xyz" in ghost.error
    crashy = manager.get("crashy")
    assert crashy.status == "error"
    assert "RuntimeError: model file missing" in crashy.error
    assert f"{crashing}.py:1" in crashy.error, "says where"

    hello = manager.get("hello")
    assert hello.loaded and hello.error is None
    assert hello.description == "Says hello. More text here."
    assert hello.default_enabled is False
    assert hello.prepare is not None and hello.prepare() == "ready"
    assert [p.id for p in manager.providers(Capability.GENERATE)] == ["hello"]
    assert manager.loaded() == [hello]


def test_entry_point_to_an_object(make_module) -> None:
    name = make_module(
        """
        from hark import hookimpl
        from hark.testing.fakes import FakeTranscriber

        class Plugin:
            '''Object-style plugin.'''

            @hookimpl
            def register_transcribers(self, register):
                register(FakeTranscriber())

        plugin = Plugin()
        """
    )
    manager = PluginManager()
    manager.load_entry_points([ep("objplug", f"{name}:plugin")])
    assert manager.get("objplug").loaded
    assert [p.id for p in manager.providers(Capability.TRANSCRIBE)] == ["objplug"]


def test_duplicate_entry_point_names_load_once(make_module) -> None:
    name = make_module(GOOD_PLUGIN)
    manager = PluginManager()
    manager.load_entry_points([ep("hello", name), ep("hello", "nonexistent_mod_xyz")])
    assert manager.get("hello").loaded


# -- validation ------------------------------------------------------------------


def test_typoed_hook_name_is_rejected() -> None:
    def register_generator(register):  # missing "s"
        register(FakeGenerator())

    manager = PluginManager()
    module = module_with(register_generator=register_generator)
    info = manager.add(module, "typo")
    assert info.status == "error"
    assert "register_generator" in info.error
    assert not manager.pm.is_registered(module)
    assert manager.providers(Capability.GENERATE) == []
    # the next plugin is not blamed for the typo
    assert manager.add(fake_plugin(FakeGenerator()), "fine").loaded


def test_hook_with_wrong_argument_name_is_rejected() -> None:
    def register_generators(reg):
        reg(FakeGenerator())

    manager = PluginManager()
    info = manager.add(module_with(register_generators=register_generators), "badarg")
    assert info.status == "error" and "reg" in info.error


def test_wrong_provider_type_is_an_error_and_leaves_nothing_behind() -> None:
    def register_transcribers(register):
        register(FakeTranscriber())

    def register_generators(register):
        register(FakeGenerator(name="good"))
        register(FakeTranscriber(name="wrong"))

    module = module_with(
        register_transcribers=register_transcribers, register_generators=register_generators
    )
    manager = PluginManager()
    info = manager.add(module, "mixed")
    assert info.status == "error"
    assert "expects a generate provider, got FakeTranscriber" in info.error
    assert info.providers == []
    for capability in Capability:
        assert manager.providers(capability) == []
    assert not manager.pm.is_registered(module)
    assert manager.listing()[0]["providers"] == []


@pytest.mark.parametrize("thing", ["a string", FakeGenerator, None])
def test_register_rejects_non_providers(thing) -> None:
    def register_generators(register):
        register(thing)

    manager = PluginManager()
    info = manager.add(module_with(register_generators=register_generators), "odd")
    assert info.status == "error" and "TypeError" in info.error


def test_duplicate_provider_ids_are_rejected() -> None:
    manager = PluginManager()
    info = manager.add(fake_plugin(FakeGenerator(name="x"), FakeGenerator(name="x")), "dup")
    assert info.status == "error" and "duplicate provider id 'dup:x'" in info.error


def test_one_plugin_may_serve_several_capabilities_with_default_names() -> None:
    manager = PluginManager()
    info = manager.add(fake_plugin(FakeTranscriber(), FakeSynthesizer()), "azure")
    assert info.loaded, info.error


def test_exception_in_a_hook_is_an_error() -> None:
    def register_synthesizers(register):
        raise OSError("voices.json missing")

    manager = PluginManager()
    info = manager.add(module_with(register_synthesizers=register_synthesizers), "tts")
    assert info.status == "error"
    assert "OSError: voices.json missing" in info.error


def test_cogs_are_collected_and_checked() -> None:
    class HelloCog(commands.Cog):
        pass

    manager = PluginManager()
    info = manager.add(fake_plugin(FakeContextProvider(), cogs=[HelloCog]), "hello")
    assert info.loaded and info.cogs == [HelloCog]
    assert info.capabilities == ["context", "commands"]

    def register_cogs(register):
        register(HelloCog())  # an instance, not the class

    bad = manager.add(module_with(register_cogs=register_cogs), "badcog")
    assert bad.status == "error" and "Cog class" in bad.error and bad.cogs == []


# -- allow / block lists -----------------------------------------------------------


def test_allow_list_blocks_everything_else(make_module) -> None:
    name = make_module(GOOD_PLUGIN)
    manager = PluginManager(allow=["hello"])
    manager.load_entry_points([ep("hello", name), ep("other", "nonexistent_mod_xyz")])
    assert manager.get("hello").loaded
    other = manager.get("other")
    assert other.status == "blocked" and other.error is None, "blocked before importing"
    assert manager.add(fake_plugin(FakeGenerator()), "extra").status == "blocked"
    assert manager.add(fake_plugin(FakeGenerator()), "core", protected=True).loaded
    assert [p.plugin_id for p in manager.providers(Capability.GENERATE)] == ["hello", "core"]


def test_empty_allow_list_loads_no_plugins() -> None:
    manager = PluginManager(allow=[])
    assert manager.add(fake_plugin(FakeGenerator()), "x").status == "blocked"
    assert manager.providers(Capability.GENERATE) == []


def test_block_list_wins(make_module) -> None:
    manager = PluginManager(allow=["a", "b"], block=["b"])
    assert manager.add(fake_plugin(FakeGenerator()), "a").loaded
    blocked = manager.add(fake_plugin(FakeGenerator()), "b")
    assert blocked.status == "blocked" and not blocked.loaded
    assert not manager.pm.has_plugin("b")
    manager.load_entry_points([ep("c", "nonexistent_mod_xyz")])
    assert manager.get("c").status == "blocked"


# -- listing -------------------------------------------------------------------------


def test_listing_shape() -> None:
    class MyCog(commands.Cog):
        pass

    manager = PluginManager()
    manager.add(
        fake_plugin(
            FakeGenerator(name="fast"),
            FakeContextProvider(name="live"),
            doc="Zed plugin.\n\nLonger text.",
            cogs=[MyCog],
        ),
        "zed",
        version="1.2.3",
    )
    manager.load_entry_points([ep("broken", "nonexistent_mod_xyz")])
    listing = manager.listing()
    assert [entry["id"] for entry in listing] == ["broken", "zed"]
    zed = listing[1]
    assert {
        "id",
        "version",
        "distribution",
        "description",
        "status",
        "error",
        "protected",
        "default_enabled",
        "hooks",
        "provides",
        "providers",
        "cogs",
        "has_prepare",
    } <= set(zed)
    assert zed["version"] == "1.2.3" and zed["description"] == "Zed plugin."
    assert zed["status"] == "loaded" and zed["error"] is None
    assert zed["hooks"] == ["register_cogs", "register_context_providers", "register_generators"]
    assert zed["provides"] == ["context", "generate", "commands"]
    assert zed["providers"] == [
        {"id": "zed:fast", "capability": "generate"},
        {"id": "zed:live", "capability": "context"},
    ]
    assert zed["cogs"] == ["MyCog"] and zed["has_prepare"] is False
    assert zed["protected"] is False and zed["default_enabled"] is True
    broken = listing[0]
    assert broken["status"] == "error" and broken["providers"] == [] and broken["hooks"] == []
