"""The built-in plugins are the hark distribution's entry points, loaded first."""

from __future__ import annotations

from importlib.metadata import EntryPoint

from hark.config import Config
from hark.plugins import PluginManager, builtin_entry_points
from hark.runtime import Runtime
from hark.testing.fakes import FakeGenerator, fake_plugin
from hark.testing.harness import BotHarness

BUILTINS = ["core", "chat", "history", "persona", "speech", "voice"]


def runtime(tmp_path, manager: PluginManager | None = None, **config) -> Runtime:
    return Runtime(Config(data_dir=tmp_path, **config), manager=manager, entry_points=[])


def test_the_builtins_are_entry_points_of_the_hark_distribution():
    eps = builtin_entry_points()
    assert [ep.name for ep in eps] == BUILTINS  # core first
    assert {ep.dist.name for ep in eps} == {"hark"}


def test_builtins_come_first_even_in_a_manager_built_by_hand(tmp_path):
    manager = PluginManager()
    manager.add(fake_plugin(FakeGenerator("hi")), "aardvark")
    rt = runtime(tmp_path, manager)
    assert list(rt.manager.plugins) == [*BUILTINS, "aardvark"]
    infos = [rt.manager.plugins[i] for i in BUILTINS]
    assert all(i.loaded and i.builtin and i.distribution == "hark" for i in infos)
    assert [i.id for i in infos if i.protected] == ["core"]
    assert rt.manager.get("persona").description.startswith("Persona: the system prompt")


def test_the_allow_list_skips_builtins_and_the_block_list_spares_core(tmp_path):
    rt = runtime(tmp_path, load_plugins=[], block_plugins=["voice", "core"])
    status = {i.id: i.status for i in rt.manager.plugins.values()}
    assert status == {**dict.fromkeys(BUILTINS, "loaded"), "voice": "blocked"}


def test_an_installed_plugin_cannot_take_a_builtins_id(tmp_path):
    manager = PluginManager()
    manager.load_builtins(None)
    manager.load_entry_points([EntryPoint("chat", "nonexistent_mod_xyz", "hark")])
    assert manager.get("chat").distribution == "hark" and manager.get("chat").loaded


def test_a_plugin_added_by_hand_under_a_builtins_id_stands_in_for_it(tmp_path):
    manager = PluginManager()
    stand_in = fake_plugin(FakeGenerator("hi"))
    manager.add(stand_in, "persona")
    rt = runtime(tmp_path, manager)
    assert rt.manager.get("persona").module is stand_in


async def test_builtins_offer_their_services_on_the_bot(tmp_path):
    async with BotHarness(tmp_path) as h:
        assert h.bot.chat is h.bot.get_cog("Chat")
        assert h.bot.voice_sessions is h.bot.get_cog("Voice")
        assert await h.bot.speak(h.guild.id, "hello") is False  # no voice session
    async with BotHarness(tmp_path / "blocked", config={"block_plugins": ["voice"]}) as h:
        assert h.bot.voice_sessions is None and h.bot.chat is not None
        assert await h.bot.speak(h.guild.id, "hello") is False
