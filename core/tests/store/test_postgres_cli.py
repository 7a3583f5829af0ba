"""`bot` with HARK_DATABASE_URL, run as a real subprocess: PostgreSQL unreachable at
start-up, asyncpg missing, and a clean run on the throwaway server."""

from __future__ import annotations

import asyncio
import socket

import asyncpg

from hark.testing.processes import BotProcess, clean_env, run_bot

PASSWORD = "s3cret-pw-for-tests"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_an_unreachable_database_at_start_up_is_one_line_exit_1(tmp_path, discord_server):
    url = f"postgresql://hark:{PASSWORD}@127.0.0.1:{closed_port()}/hark"
    env = clean_env(
        DISCORD_BOT_TOKEN=discord_server.bot_token,
        DISCORD_API_BASE=discord_server.api_base,
        HARK_DATA_DIR=str(tmp_path / "data"),
        HARK_DATABASE_URL=url,
    )
    code, out, err = await run_bot("run", cwd=tmp_path, env=env)
    assert code == 1, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: cannot reach the database postgresql://hark:***@127.0.0.1:")
    assert "Traceback" not in err
    assert PASSWORD not in out + err
    assert not (tmp_path / "data" / "hark.sqlite3").exists()  # no silent fallback


async def test_bot_plugins_still_lists_when_the_database_is_unreachable(tmp_path):
    url = f"postgresql://hark:{PASSWORD}@127.0.0.1:{closed_port()}/hark"
    env = clean_env(HARK_DATABASE_URL=url, HARK_DATA_DIR=str(tmp_path / "data"))
    code, out, err = await run_bot("plugins", cwd=tmp_path, env=env)
    assert code == 0, err
    assert "chat" in out and "history" in out
    assert "(not showing what running bots report: cannot reach the database" in err
    assert PASSWORD not in out + err and "Traceback" not in err


async def test_a_postgresql_url_without_asyncpg_says_what_to_install(tmp_path):
    blocker = tmp_path / "site" / "asyncpg"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('asyncpg is blocked in this test')\n")
    env = clean_env(
        PYTHONPATH=str(tmp_path / "site"),
        DISCORD_BOT_TOKEN="not-a-real-token-0123456789",
        HARK_DATABASE_URL=f"postgresql://hark:{PASSWORD}@127.0.0.1/hark",
    )
    code, out, err = await run_bot("run", cwd=tmp_path, env=env)
    assert code == 2, err
    assert err.strip().splitlines() == [
        "error: postgresql://hark:***@127.0.0.1/hark is a PostgreSQL database, which needs "
        "asyncpg: pip install 'hark[postgresql]'"
    ]
    assert PASSWORD not in out + err


async def test_bot_run_on_postgresql_starts_and_stops_cleanly(
    tmp_path, discord_server, postgres_url
):
    guild = discord_server.create_guild("Ops")
    discord_server.create_text_channel(guild, "general")
    env = clean_env(
        DISCORD_BOT_TOKEN=discord_server.bot_token,
        DISCORD_API_BASE=discord_server.api_base,
        HARK_DATA_DIR=str(tmp_path / "data"),
        HARK_DATABASE_URL=postgres_url,
        HARK_LOG_LEVEL="DEBUG",
        HARK_SYNC_COMMANDS="false",
        HARK_LOAD_PLUGINS="",  # the built-ins only
    )
    async with BotProcess("run", cwd=tmp_path, env=env) as bot:
        await bot.wait_for_line("applying database migration 1")
        async with asyncio.timeout(30):
            while discord_server.identify_count < 1:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # let it finish start-up
        assert await bot.stop() == 0, bot.output[-3000:]
    assert "Traceback" not in bot.output and "bot stopped" in bot.output
    conn = await asyncpg.connect(postgres_url)
    try:
        assert await conn.fetchval("SELECT version FROM schema_version") >= 5
        # A clean exit leaves no runtime status behind.
        assert await conn.fetchval("SELECT count(*) FROM runtime_status") == 0
    finally:
        await conn.close()
    assert not (tmp_path / "data" / "hark.sqlite3").exists()
