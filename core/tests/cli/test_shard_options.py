"""`bot run --shards / --shard-count` as a real subprocess: bad values are one usage
line, and a sharded run connects every shard it was given."""

from __future__ import annotations

import pytest

from hark.testing.discord import FakeDiscord
from hark.testing.processes import BotProcess, clean_env, run_bot

TOKEN = "not-a-real-token-but-secret-0123456789"


@pytest.mark.parametrize(
    ("args", "env", "error"),
    [
        (
            ["--shards", "4", "--shard-count", "2"],
            {},
            "error: shard 4 does not exist with a shard count of 2: shard ids go from 0 to 1 "
            "(--shards / HARK_SHARDS)",
        ),
        (
            ["--shards", "0-x", "--shard-count", "2"],
            {},
            "error: --shards: expected shard ids like 0-3 or 0,2,5, got '0-x'",
        ),
        (
            ["--shard-count", "two"],
            {},
            "error: --shard-count: expected a number of shards, got 'two'",
        ),
        (
            ["--shards", "0-1"],
            {},
            "error: --shards (HARK_SHARDS) needs --shard-count (HARK_SHARD_COUNT): "
            "how many shards the whole bot has",
        ),
        (
            [],
            {"HARK_SHARDS": "0-x", "HARK_SHARD_COUNT": "2"},
            "error: environment variable HARK_SHARDS: invalid value for shards: "
            "expected shard ids like 0-3 or 0,2,5, got '0-x'",
        ),
        (  # the command line wins over the environment, and is checked with it
            ["--shards", "3"],
            {"HARK_SHARDS": "0", "HARK_SHARD_COUNT": "2"},
            "error: shard 3 does not exist with a shard count of 2",
        ),
    ],
)
async def test_bad_shard_values_are_one_line_exit_2(tmp_path, args, env, error):
    code, out, err = await run_bot(
        "run", *args, cwd=tmp_path, env=clean_env(DISCORD_BOT_TOKEN=TOKEN, **env)
    )
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(error), err
    assert "Traceback" not in err + out and "usage:" not in err


async def test_one_process_runs_every_shard_of_its_count(tmp_path):
    async with FakeDiscord(shard_count=2, max_concurrency=2) as server:
        server.create_guild("zero", shard=0)
        server.create_guild("one", shard=1)
        env = clean_env(
            DISCORD_BOT_TOKEN=server.bot_token,
            DISCORD_API_BASE=server.api_base,  # the gateway comes from GET /gateway/bot
            HARK_DATA_DIR=str(tmp_path / "state"),
            HARK_SYNC_COMMANDS="false",
            HARK_LOAD_PLUGINS="",  # the built-ins only
        )
        async with BotProcess("run", "--shard-count", "2", cwd=tmp_path, env=env) as bot:
            await bot.wait_for_line("ready: shards 0-1 of 2, 2 servers")
            sessions = await server.wait_for_shards()
            assert sorted(sessions) == [0, 1]
            assert server.refused_identifies == []
            assert bot.lines("this process runs shards 0-1 of 2")
            # one process on SQLite running every shard: nothing to warn about
            assert not bot.lines("runs only some shards")
            assert bot.lines("Discord allows 2 IDENTIFY at a time (max_concurrency)")
            assert await bot.stop() == 0, bot.output
        assert "Traceback" not in bot.output and server.bot_token not in bot.output
