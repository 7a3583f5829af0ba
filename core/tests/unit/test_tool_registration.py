"""Tools from plugins: registration (hook and hark.Plugin), name clashes, the listing,
control.tools_for per server, and the prompt and tools a prepared turn gets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import BaseModel

import hark
from hark import ImagePart, PromptMessage
from hark.chat.pipeline import Conversation
from hark.chat.settings import ChatSettings
from hark.control import PluginControl
from hark.plugins import PluginManager
from hark.providers import ContextRequest
from hark.store import PluginState, SettingsStore, SQLiteDatabase
from hark.testing.fakes import FakeContextProvider, FakeGenerator, fake_plugin


class Empty(BaseModel):
    pass


def make_tool(name: str, **options) -> hark.Tool:
    async def run(args: Empty, ctx: hark.ToolContext) -> str:
        return name

    return hark.Tool(name, f"The {name} tool.", Empty, run, **options)


class Box:
    """A toolbox whose tools change while the bot runs (an MCP server's)."""

    def __init__(self, *tools: hark.Tool) -> None:
        self.tools = list(tools)
        self.asked: list[int | None] = []

    def tools_for(self, guild_id: int | None) -> list[hark.Tool]:
        self.asked.append(guild_id)
        return list(self.tools)


class BrokenBox:
    def tools_for(self, guild_id: int | None) -> list[hark.Tool]:
        raise RuntimeError("the server died")


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SQLiteDatabase]:
    database = SQLiteDatabase(tmp_path / "hark.sqlite3")
    await database.open()
    yield database
    await database.close()


@pytest.fixture
async def state(db: SQLiteDatabase) -> PluginState:
    state = PluginState(db)
    await state.load()
    return state


# -- registration ---------------------------------------------------------------


def test_a_declared_plugin_registers_its_tools_and_toolboxes():
    dice, box = make_tool("roll_die"), Box(make_tool("remote"))
    manager = PluginManager()
    info = manager.add(hark.Plugin(description="Dice", tools=[dice, box]), "dice")
    assert info.loaded, info.error
    assert info.tools == [dice, box]
    assert dice.plugin_id == "dice"
    assert "tools" in info.capabilities
    assert "register_tools" in info.hooks
    listed = info.as_dict()
    assert listed["tools"] == ["roll_die"] and listed["toolboxes"] == 1
    assert "tools" in listed["provides"]


def test_a_hook_module_registers_tools_too():
    manager = PluginManager()
    info = manager.add(fake_plugin(tools=[make_tool("ping_host")]), "net")
    assert info.loaded, info.error
    assert [t.name for t in info.tools] == ["ping_host"]
    assert manager.tool_owners() == {"ping_host": "net"}


def test_no_tools_no_tools_capability():
    info = PluginManager().add(fake_plugin(FakeGenerator()), "llm")
    assert "tools" not in info.capabilities and info.as_dict()["tools"] == []


def test_a_tool_name_another_plugin_holds_fails_the_newcomer_naming_both():
    manager = PluginManager()
    first = manager.add(hark.Plugin(description="A", tools=[make_tool("roll_die")]), "dice")
    gen = FakeGenerator()
    second = manager.add(
        hark.Plugin(description="B", providers=[gen], tools=[make_tool("roll_die")]), "casino"
    )
    assert first.loaded
    assert second.status == "error"
    assert second.error == (
        "registration failed: tool roll_die of plugin casino is already registered by plugin dice"
    )
    # All or nothing: none of the newcomer's providers or tools are kept.
    assert second.providers == [] and second.tools == []
    assert manager.tool_owners() == {"roll_die": "dice"}


def test_one_plugin_registering_a_name_twice_fails():
    manager = PluginManager()
    info = manager.add(
        hark.Plugin(description="A", tools=[make_tool("roll"), make_tool("roll")]), "dice"
    )
    assert info.status == "error" and "registered twice by plugin dice" in info.error


def test_something_else_than_a_tool_is_refused():
    manager = PluginManager()
    info = manager.add(hark.Plugin(description="A", tools=[print]), "odd")
    assert info.status == "error" and "expects a hark.Tool or hark.Toolbox" in info.error


# -- per server -----------------------------------------------------------------


async def test_tools_for_honours_each_servers_switch_and_asks_toolboxes(state):
    manager = PluginManager()
    box = Box(make_tool("remote_a"))
    manager.add(hark.Plugin(description="Dice", tools=[make_tool("roll_die")]), "dice")
    manager.add(hark.Plugin(description="MCP", tools=[box, BrokenBox()]), "mcp")
    manager.add(
        hark.Plugin(description="Off", tools=[make_tool("secret")], default_enabled=False), "off"
    )
    control = PluginControl(manager, state)
    assert [t.name for t in control.tools_for(1)] == ["roll_die", "remote_a"]
    assert box.asked == [1]
    assert control.tools_for(1)[1].plugin_id == "mcp"  # a toolbox's tools are its plugin's

    await control.set_enabled("dice", 1, False)
    await control.set_enabled("off", 2, True)
    assert [t.name for t in control.tools_for(1)] == ["remote_a"]
    assert [t.name for t in control.tools_for(2)] == ["roll_die", "remote_a", "secret"]

    # A toolbox's tool named like a fixed tool of another plugin: the first holder wins.
    box.tools.append(make_tool("roll_die"))
    assert [t.name for t in control.tools_for(2)] == ["roll_die", "remote_a", "secret"]
    assert control.tools_for(2)[0].plugin_id == "dice"


# -- a prepared turn ------------------------------------------------------------


async def test_prepare_puts_the_reply_chain_before_the_message_with_its_attachments(state):
    gen = FakeGenerator("ok")
    manager = PluginManager()
    manager.add(fake_plugin(gen, FakeContextProvider("You are Hark.", order=0)), "llm")
    conversation = Conversation(PluginControl(manager, state))
    cat = ImagePart(b"png", "image/png", "cat.png")
    chain = [
        PromptMessage("user", "what's this?", name="bob", images=(cat,)),
        PromptMessage("assistant", "A cat."),
    ]
    request = ContextRequest(
        text="and its name?",
        user_name="alice",
        attachments="[file notes.txt]\nIt is called Tom.",
        images=(cat,),
        reply_chain=chain,
    )
    turn = await conversation.prepare(request)
    assert turn.prompt.messages == [
        PromptMessage("system", "You are Hark."),
        *chain,
        PromptMessage(
            "user",
            "and its name?\n\n[file notes.txt]\nIt is called Tom.",
            name="alice",
            images=(cat,),
        ),
    ]
    assert turn.tools == []  # the generator does not support tools

    bare = await conversation.prepare(ContextRequest(text="", attachments="[file a.zip]"))
    assert bare.prompt.messages[-1].content == "[file a.zip]"


async def test_prepare_offers_tools_within_the_servers_limits(db, state):
    gen = FakeGenerator("ok", supports_tools=True)
    manager = PluginManager()
    manager.add(fake_plugin(gen), "llm")
    manager.add(hark.Plugin(description="Dice", tools=[make_tool("roll_die")]), "dice")
    settings = SettingsStore(db)
    await settings.load()
    settings.declare("chat", ChatSettings)
    conversation = Conversation(PluginControl(manager, state), settings=settings, host="HOST")
    turn = await conversation.prepare(ContextRequest(text="roll", guild_id=5, channel_id=6))
    assert [t.name for t in turn.tools] == ["roll_die"]
    assert (turn.limits.rounds, turn.limits.seconds) == (5, 60.0)
    assert turn.host == "HOST"

    await settings.set_value("chat", "tool_rounds", 2, "server", 5)
    await settings.set_value("chat", "tool_seconds", 7.5, "channel", 6)
    turn = await conversation.prepare(ContextRequest(text="roll", guild_id=5, channel_id=6))
    assert (turn.limits.rounds, turn.limits.seconds) == (2, 7.5)

    await settings.set_value("chat", "tool_rounds", 0, "server", 5)
    turn = await conversation.prepare(ContextRequest(text="roll", guild_id=5, channel_id=6))
    assert turn.tools == []
    assert "".join([d async for d in turn.stream()]) == "ok"
    assert gen.offered_tools[-1] == []


async def test_a_tool_gets_its_plugins_settings(db, state):
    class DiceSettings(hark.Settings):
        sides: int = hark.setting(6, description="default sides")

    seen = []

    async def run(args: Empty, ctx: hark.ToolContext) -> str:
        seen.append(ctx)
        return str(ctx.settings.sides)

    dice = hark.Tool("roll_die", "Roll.", Empty, run)
    gen = FakeGenerator([[hark.ToolCall("1", "roll_die", "{}")], "rolled"], supports_tools=True)
    manager = PluginManager()
    manager.add(fake_plugin(gen), "llm")
    manager.add(hark.Plugin(description="Dice", settings=DiceSettings, tools=[dice]), "dice")
    settings = SettingsStore(db)
    await settings.load()
    settings.declare("dice", DiceSettings)
    await settings.set_value("dice", "sides", 20, "server", 5)
    conversation = Conversation(PluginControl(manager, state), settings=settings)
    turn = await conversation.prepare(ContextRequest(text="roll", guild_id=5, channel_id=6))
    assert "".join([d async for d in turn.stream()]) == "rolled"
    assert seen[0].settings.sides == 20 and seen[0].host is None
    assert gen.requests[1].messages[-1].content == "20"
