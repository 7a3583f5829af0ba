"""Declared settings: the one precedence, origins, text parsing, readable refusals,
invalid stored / bot.toml / environment values, and the store's writes."""

from __future__ import annotations

import enum
import json
import logging
from typing import Literal

import pytest

import hark
from hark.settings import MISSING, SettingError, check, coerce, resolve, scope_key
from hark.store import SettingsStore, SQLiteDatabase

ALL = ("global", "server", "channel", "user")


class Speed(enum.Enum):
    SLOW = "slow"
    FAST = "fast"


class Demo(hark.Settings):
    voice: str = hark.setting("amber", env="DEMO_VOICE", scopes=ALL, description="the voice")
    rate: float = hark.setting(1.0, ge=0.5, le=2.0, env="DEMO_RATE", description="speed")
    count: int = hark.setting(3, gt=0, description="how many")
    loud: bool = hark.setting(False, description="shout")
    mode: Literal["a", "b"] = hark.setting("a", description="mode")
    speed: Speed = hark.setting(Speed.SLOW, description="speed word")
    tags: list[str] = hark.setting([], description="tags")
    size: str = hark.setting("m", choices=["s", "m", "l"], description="size")
    note: str | None = hark.setting(None, max_length=5, description="a short note")
    region: str = hark.setting("", scopes=("global",), description="bot-wide only")


def layers(**stored: object):
    """``stored`` as the store's lookup: keys like ``server__voice``."""
    table = {}
    for name, value in stored.items():
        scope, key = name.split("__")
        table[(scope_key(scope, None if scope == "global" else 7), key)] = value
    return lambda scope, key: table.get((scope, key), MISSING)


def where(**stored: object):
    return resolve(
        "demo",
        Demo,
        toml={"voice": "from-toml"},
        environ={"DEMO_VOICE": "from-env"} if stored.pop("env", True) else {},
        stored=layers(**stored),
        guild_id=7,
        channel_id=7,
        user_id=7,
    )


@pytest.mark.parametrize(
    ("stored", "value", "origin"),
    [
        ({"env": False}, "from-toml", "bot.toml"),
        ({}, "from-env", "env DEMO_VOICE"),
        ({"global__voice": "owner"}, "owner", "bot-wide (owner)"),
        ({"global__voice": "owner", "server__voice": "srv"}, "srv", "this server"),
        ({"server__voice": "srv", "channel__voice": "chan"}, "chan", "this channel"),
        ({"channel__voice": "chan", "user__voice": "mine"}, "mine", "your own"),
    ],
)
def test_each_layer_beats_the_ones_below(stored, value, origin) -> None:
    resolved = where(**stored)
    assert resolved.values.voice == value
    assert str(resolved.origin("voice")) == origin


def test_defaults_and_layer_order() -> None:
    resolved = resolve("demo", Demo, environ={})
    assert resolved.values.voice == "amber" and str(resolved.origin("voice")) == "default"
    assert isinstance(resolved.values, Demo)
    assert hark.settings.LAYERS == (
        "default", "bot.toml", "env", "global", "server", "channel", "user",
    )  # fmt: skip


def test_stored_scopes_count_only_where_the_field_allows_them() -> None:
    lookup = layers(server__region="srv", global__region="west", user__count=8)
    resolved = resolve("demo", Demo, environ={}, stored=lookup, guild_id=7, user_id=7)
    assert resolved.values.region == "west"  # bot-wide only: the server's row is ignored
    assert resolved.values.count == 3  # not settable per member: the row is ignored
    lookup = layers(channel__count=9)  # channels are allowed by default...
    assert resolve("demo", Demo, environ={}, stored=lookup, channel_id=7).values.count == 9
    # ...and count when the call has that channel.
    assert resolve("demo", Demo, environ={}, stored=lookup, guild_id=7).values.count == 3


def test_an_invalid_stored_value_falls_back_with_one_warning(caplog) -> None:
    lookup = layers(global__rate=1.5, server__rate=9)
    report = hark.settings.ReportOnce(logging.getLogger("test.settings"))
    with caplog.at_level(logging.WARNING, logger="test.settings"):
        for _ in range(3):
            resolved = resolve("demo", Demo, environ={}, stored=lookup, guild_id=7, report=report)
            assert resolved.values.rate == 1.5
            assert str(resolved.origin("rate")) == "bot-wide (owner)"
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith("demo: ignoring the stored rate = 9 (guild:7):")
    assert "`rate` must be a number between 0.5 and 2.0" in line


def test_bad_toml_and_env_values_are_reported_at_start_up_and_ignored(caplog) -> None:
    toml = {"count": 0, "colour": "red", "loud": "maybe"}
    environ = {"DEMO_RATE": "fast", "DEMO_VOICE": ""}  # an empty variable is unset
    with caplog.at_level(logging.WARNING, logger="hark.settings"):
        problems = check("demo", Demo, toml=toml, environ=environ)
    assert problems == [
        "demo: ignoring bot.toml [plugin.demo] colour: there is no such setting (settings:"
        " voice, rate, count, loud, mode, speed, tags, size, note, region)",
        "demo: ignoring DEMO_RATE='fast': `rate` must be a number between 0.5 and 2.0",
        "demo: ignoring bot.toml [plugin.demo] count = 0: `count` must be a whole number"
        " greater than 0",
        "demo: ignoring bot.toml [plugin.demo] loud = 'maybe': `loud` must be on or off",
    ]
    assert [r.getMessage() for r in caplog.records] == problems
    values = resolve("demo", Demo, toml=toml, environ=environ).values
    assert (values.count, values.rate, values.loud, values.voice) == (3, 1.0, False, "amber")


@pytest.mark.parametrize(
    ("key", "text", "value"),
    [
        ("loud", "ON", True),
        ("loud", "no", False),
        ("loud", "Yes", True),
        ("count", " 12 ", 12),
        ("rate", "0.75", 0.75),
        ("mode", "B", "b"),
        ("speed", "FAST", Speed.FAST),
        ("tags", "x, y ,,z", ["x", "y", "z"]),
        ("size", "L", "l"),
        ("note", "none", None),
        ("voice", "  jenny ", "jenny"),
    ],
)
def test_text_from_chat_is_read_per_type(key, text, value) -> None:
    assert coerce(Demo, key, text) == value


@pytest.mark.parametrize(
    ("key", "text", "message"),
    [
        ("rate", "3", "`rate` must be a number between 0.5 and 2.0"),
        ("rate", "quick", "`rate` must be a number between 0.5 and 2.0"),
        ("count", "-1", "`count` must be a whole number greater than 0"),
        ("count", "two", "`count` must be a whole number greater than 0"),
        ("loud", "perhaps", "`loud` must be on or off"),
        ("mode", "c", "`mode` must be one of `a`, `b`"),
        ("speed", "warp", "`speed` must be one of `slow`, `fast`"),
        ("size", "xl", "`size` must be one of `s`, `m`, `l`"),
        ("note", "toolong", "`note` must be text of at most 5 characters"),
        ("nope", "1", "there is no setting `nope` (settings: `voice`, `rate`, `count`, `loud`,"),
    ],
)
def test_refusals_are_one_readable_line(key, text, message) -> None:
    with pytest.raises(SettingError) as caught:
        coerce(Demo, key, text)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_declaration_checks() -> None:
    with pytest.raises(ValueError, match="unknown scope"):
        hark.setting(1, description="x", scopes=("guild",))
    with pytest.raises(TypeError, match="need a default"):

        class NoDefault(hark.Settings):
            x: int

        hark.Plugin(description="x", settings=NoDefault)
    with pytest.raises(Exception, match="Extra inputs"):
        Demo(colour="red")
    assert {"reset", "default", "clear", "unset"} == hark.RESET_WORDS


@pytest.fixture
async def store(database):
    """The settings store on SQLite and on PostgreSQL (core/tests/conftest.py)."""
    settings = SettingsStore(database, environ={"DEMO_VOICE": "from-env"})
    await settings.load()
    settings.declare("demo", Demo)
    return settings


async def test_the_store_validates_writes_and_resets(store, tmp_path) -> None:
    assert await store.set_value("demo", "rate", 1.25, "server", 7) == 1.25
    assert await store.set_value("demo", "speed", Speed.FAST, "server", 7) == Speed.FAST
    await store.set_value("demo", "voice", "jenny", "user", 99)
    with pytest.raises(SettingError, match=r"`rate` must be a number between 0\.5 and 2\.0"):
        await store.set_value("demo", "rate", 5, "server", 7)
    with pytest.raises(SettingError, match="`region` can't be set per server"):
        await store.set_value("demo", "region", "x", "server", 7)
    resolved = store.resolve("demo", guild_id=7, user_id=99)
    assert (resolved.values.rate, resolved.values.speed, resolved.values.voice) == (
        1.25,
        Speed.FAST,
        "jenny",
    )
    # Stored as JSON in the same table, so a reload gives the same values back.
    rows = await store.db.fetchall("SELECT namespace, scope, key, value FROM settings")
    assert sorted(rows) == [
        ("demo", "guild:7", "rate", "1.25"),
        ("demo", "guild:7", "speed", json.dumps("fast")),
        ("demo", "user:99", "voice", json.dumps("jenny")),
    ]
    assert await store.reset_value("demo", "rate", "server", 7) is True
    assert await store.reset_value("demo", "rate", "server", 7) is False
    assert store.resolve("demo", guild_id=7).values.rate == 1.0
    assert str(store.resolve("demo", guild_id=7).origin("voice")) == "env DEMO_VOICE"


async def test_a_database_written_before_typed_settings_keeps_every_choice(db_factory) -> None:
    """Rows written through the Red-style API (what every plugin did before) are the
    rows the typed settings read: same namespace, scope and key, no migration."""
    db = await db_factory()
    old = SettingsStore(db)
    await old.load()
    conf = old.for_plugin("demo")
    await conf.guild(1).set("voice", "ryan")
    await conf.guild(2).set("voice", "sonia")
    await conf.guild(2).set("rate", 1.5)
    await conf.global_().set("count", 5)
    await conf.channel(3).set("mode", "b")
    await db.close()

    db = await db_factory()
    store = SettingsStore(db, environ={})
    await store.load()
    store.declare("demo", Demo)
    one, two = store.resolve("demo", guild_id=1), store.resolve("demo", guild_id=2)
    assert (one.values.voice, one.values.rate, one.values.count) == ("ryan", 1.0, 5)
    assert (two.values.voice, two.values.rate) == ("sonia", 1.5)
    assert str(two.origin("rate")) == "this server"
    assert store.resolve("demo", guild_id=2, channel_id=3).values.mode == "b"
    # ...and the old API still reads what the new one writes.
    await store.set_value("demo", "voice", "guy", "server", 1)
    assert store.for_plugin("demo").guild(1).get("voice") == "guy"
    await db.close()


def test_bot_toml_is_below_the_environment_but_still_a_v1_global(tmp_path) -> None:
    store = SettingsStore(SQLiteDatabase(tmp_path / "x.sqlite3"), environ={"DEMO_VOICE": "env"})
    store.seed_globals("demo", {"voice": "toml", "count": 4})
    store.declare("demo", Demo)
    resolved = store.resolve("demo")
    assert (resolved.values.voice, str(resolved.origin("voice"))) == ("env", "env DEMO_VOICE")
    assert (resolved.values.count, str(resolved.origin("count"))) == (4, "bot.toml")
    # The Red-style API keeps reading bot.toml values as globals.
    assert store.for_plugin("demo").guild(1).get("count", None) == 4
    # Results are reused, but a change of the environment is seen at once.
    assert store.resolve("demo") is resolved
    store.environ["DEMO_VOICE"] = "changed"
    assert store.resolve("demo").values.voice == "changed"
    del store.environ["DEMO_VOICE"]
    assert str(store.resolve("demo").origin("voice")) == "bot.toml"
