"""Shard settings: HARK_SHARDS / HARK_SHARD_COUNT (bot.toml bot.shards / bot.shard_count),
their checks, and the bot class they choose (docs/scaling.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
from discord.ext import commands

from hark.bot import HarkBot, ShardedHarkBot, make_bot
from hark.config import (
    Config,
    ConfigError,
    check_shards,
    format_shards,
    load_config,
    parse_shards,
)
from hark.runtime import Runtime
from hark.testing.harness import isolated_manager


@pytest.mark.parametrize(
    ("value", "ids"),
    [
        ("0-3", [0, 1, 2, 3]),
        ("0,2,5", [0, 2, 5]),
        (" 0 - 2 , 8 ", [0, 1, 2, 8]),
        ("3,1,1-2", [1, 2, 3]),
        ("7", [7]),
        ([0, 1], [0, 1]),
        (["0-1", 4], [0, 1, 4]),
        (2, [2]),
    ],
)
def test_parse_shards(value, ids):
    assert parse_shards(value) == ids


@pytest.mark.parametrize("value", ["0-x", "", "a", "1-", "3-1", "0,,1", "-1", True, [], "0-999999"])
def test_parse_shards_refuses(value):
    with pytest.raises(ValueError):
        parse_shards(value)


def test_format_shards():
    assert format_shards([0, 1, 2, 5]) == "0-2,5"
    assert format_shards([3]) == "3"
    assert format_shards(range(4)) == "0-3"
    assert format_shards([4, 0, 2, 1]) == "0-2,4"


def test_from_the_environment_and_bot_toml(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no stray bot.toml
    env = {"HARK_SHARDS": "2-3", "HARK_SHARD_COUNT": "4"}
    config = load_config(environ=env, dotenv=None)
    assert (config.shards, config.shard_count, config.shard_ids) == ([2, 3], 4, [2, 3])

    toml = tmp_path / "bot.toml"
    toml.write_text("[bot]\nshards = [0, 1]\nshard_count = 2\n", encoding="utf-8")
    config = load_config(toml, environ={}, dotenv=None)
    assert (config.shards, config.shard_count) == ([0, 1], 2)
    # the environment wins over bot.toml
    config = load_config(toml, environ={"HARK_SHARDS": "1"}, dotenv=None)
    assert config.shard_ids == [1]

    with pytest.raises(ConfigError) as refused:
        load_config(environ={"HARK_SHARDS": "0-x"}, dotenv=None)
    assert str(refused.value) == (
        "environment variable HARK_SHARDS: invalid value for shards: "
        "expected shard ids like 0-3 or 0,2,5, got '0-x'"
    )


def test_not_sharded_by_default_and_a_count_alone_means_every_shard():
    assert Config().shard_ids is None
    assert Config(shard_count=3).shard_ids == [0, 1, 2]
    check_shards(Config())
    check_shards(Config(shard_count=3))


@pytest.mark.parametrize(
    ("shards", "count", "message"),
    [
        (
            [4],
            2,
            "shard 4 does not exist with a shard count of 2: shard ids go from 0 to 1 "
            "(--shards / HARK_SHARDS)",
        ),
        ([-1], 2, "shard -1 does not exist"),
        ([0], None, "--shards (HARK_SHARDS) needs --shard-count (HARK_SHARD_COUNT)"),
        (None, 0, "--shard-count (HARK_SHARD_COUNT) must be 1 or more, got 0"),
    ],
)
def test_check_shards(shards, count, message):
    with pytest.raises(ConfigError) as refused:
        check_shards(Config(shards=shards, shard_count=count))
    assert str(refused.value).startswith(message)


def runtime(tmp_path: Path, **settings) -> Runtime:
    return Runtime(Config(data_dir=tmp_path, **settings), manager=isolated_manager())


def test_make_bot_chooses_the_class(tmp_path: Path):
    plain = make_bot(runtime(tmp_path))
    assert type(plain) is HarkBot and isinstance(plain, commands.Bot)
    assert not isinstance(plain, commands.AutoShardedBot)
    assert plain.shard_label is None and plain.shard_for(123 << 22) is None

    bot = make_bot(runtime(tmp_path, shards=[1, 2, 3, 7], shard_count=8))
    assert isinstance(bot, ShardedHarkBot) and isinstance(bot, commands.AutoShardedBot)
    assert (bot.shard_ids, bot.shard_count) == ([1, 2, 3, 7], 8)
    assert bot.shard_label == "shards 1-3,7 of 8"
    assert bot.shard_for(None) == 0  # DMs
    assert bot.shard_for((5 << 22) | 77) == 5
    assert bot.gateway_socket(5 << 22) is None and not bot.gateway_open  # not connected

    every = make_bot(runtime(tmp_path, shard_count=2))
    assert every.shard_ids == [0, 1] and every.shard_label == "shards 0-1 of 2"
    assert make_bot(runtime(tmp_path, shards=[1], shard_count=2)).shard_label == "shard 1 of 2"

    with pytest.raises(ConfigError):
        make_bot(runtime(tmp_path, shards=[2], shard_count=2))
