"""The `bot` command, run as a real subprocess (the way operators run it)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

from hark.cli import pip_target
from hark.testing.processes import BOT, clean_env, fake_distribution, run_bot

SECRET_TOKEN = "not-a-real-token-but-secret-0123456789"


async def test_version(tmp_path):
    code, out, _ = await run_bot("--version", cwd=tmp_path, env=clean_env())
    assert code == 0 and out.startswith("hark ")


async def test_run_without_token_is_one_line_exit_2(tmp_path):
    code, out, err = await run_bot("run", cwd=tmp_path, env=clean_env())
    assert code == 2
    assert err.strip().splitlines() == [err.strip()]
    assert err.startswith("error: DISCORD_BOT_TOKEN is not set")
    assert "Traceback" not in err + out


async def test_rejected_token_from_dotenv_is_one_line_exit_2(tmp_path, discord_server):
    (tmp_path / ".env").write_text(f"DISCORD_BOT_TOKEN={SECRET_TOKEN}\n")
    env = clean_env(DISCORD_API_BASE=discord_server.api_base, HARK_LOG_LEVEL="DEBUG")
    code, out, err = await run_bot("run", cwd=tmp_path, env=env)
    assert code == 2, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: Discord rejected DISCORD_BOT_TOKEN")
    assert "Traceback" not in err
    assert SECRET_TOKEN not in err + out


async def test_unreachable_api_is_one_line_exit_1(tmp_path):
    env = clean_env(DISCORD_BOT_TOKEN=SECRET_TOKEN, DISCORD_API_BASE="http://127.0.0.1:9/api/v10")
    code, out, err = await run_bot("run", cwd=tmp_path, env=env)
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("error: cannot reach DISCORD_API_BASE")
    assert "Traceback" not in err and SECRET_TOKEN not in err + out


async def test_invalid_bot_toml_is_one_line_exit_2(tmp_path):
    (tmp_path / "bot.toml").write_text("[bot\nprefix = '!'\n")
    code, _, err = await run_bot("plugins", cwd=tmp_path, env=clean_env())
    assert code == 2 and err.startswith("error: bot.toml: not valid TOML")


async def test_run_connects_and_stops_cleanly_on_sigterm(tmp_path, discord_server):
    guild = discord_server.create_guild("Ops")
    discord_server.create_text_channel(guild, "general")
    env = clean_env(
        DISCORD_BOT_TOKEN=discord_server.bot_token,
        DISCORD_API_BASE=discord_server.api_base,  # gateway found through GET /gateway/bot
        HARK_DATA_DIR=str(tmp_path / "state"),
        HARK_LOG_LEVEL="DEBUG",
    )
    proc = await asyncio.create_subprocess_exec(
        *BOT,
        "run",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(30):
            while discord_server.identify_count < 1:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # let it finish start-up (command sync)
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = out.decode() + err.decode()
    assert proc.returncode == 0, text
    assert "received SIGTERM, shutting down" in text and "bot stopped" in text
    assert "Traceback" not in text
    assert discord_server.bot_token not in text
    # the database was created and closed cleanly (it opens, and holds the schema)
    with sqlite3.connect(tmp_path / "state" / "hark.sqlite3") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] >= 1
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


async def test_plugins_shows_what_the_running_bot_reports(tmp_path):
    import time

    from hark.store import RuntimeStatus, SQLiteDatabase

    db = SQLiteDatabase(tmp_path / "data" / "hark.sqlite3")
    await db.open()
    await RuntimeStatus(db, "host:1").publish({"chat": "1 of 2 MCP servers up — search: down"})
    await RuntimeStatus(db, "gone:2").publish({"history": "stale"})
    await db.execute(
        "UPDATE runtime_status SET updated_at = ? WHERE process = 'gone:2'", (time.time() - 3600,)
    )
    await db.close()
    env = clean_env(HARK_DATA_DIR=str(tmp_path / "data"))
    code, out, err = await run_bot("plugins", cwd=tmp_path, env=env)
    assert code == 0, err
    (chat,) = [line for line in out.splitlines() if line.startswith("chat ")]
    assert chat.endswith("⚠ 1 of 2 MCP servers up — search: down")
    assert "stale" not in out and "gone:2" not in out  # that process is long gone
    assert "running on this database: host:1" in out
    code, out, _ = await run_bot("plugins", "--json", cwd=tmp_path, env=env)
    listing = {p["id"]: p for p in json.loads(out)}
    assert listing["chat"]["running"] == ["1 of 2 MCP servers up — search: down"]
    assert listing["history"]["running"] == []


async def test_plugins_does_not_create_a_database(tmp_path):
    env = clean_env(HARK_DATA_DIR=str(tmp_path / "data"))
    code, out, err = await run_bot("plugins", cwd=tmp_path, env=env)
    assert code == 0, err
    assert not (tmp_path / "data" / "hark.sqlite3").exists() and "running on" not in out


async def test_plugins_json_lists_installed_and_broken(tmp_path):
    site = tmp_path / "site"
    fake_distribution(
        site,
        "hark_demo_dist",
        {"demo": "hark_demo_mod", "broken": "hark_demo_missing"},
        {
            "hark_demo_mod": '''
                """Demo: registers nothing but a cog-less hook."""
                from hark import hookimpl

                @hookimpl
                def register_context_providers(register):
                    pass
            '''
        },
    )
    env = clean_env(PYTHONPATH=str(site))
    code, out, err = await run_bot("plugins", "--json", cwd=tmp_path, env=env)
    assert code == 0, err
    listing = {p["id"]: p for p in json.loads(out)}
    assert listing["core"]["status"] == "loaded" and listing["core"]["protected"]
    assert listing["demo"]["status"] == "loaded" and listing["demo"]["version"] == "0.3.0"
    assert listing["demo"]["hooks"] == ["register_context_providers"]
    assert listing["broken"]["status"] == "error"
    assert "ModuleNotFoundError" in listing["broken"]["error"]
    assert "hello" in listing  # the example plugin installed by scripts/test

    code, out, _ = await run_bot("plugins", cwd=tmp_path, env=env)
    assert code == 0 and "broken" in out and "ERROR" in out

    env["HARK_LOAD_PLUGINS"] = ""  # set but empty: load none
    code, out, _ = await run_bot("plugins", "--json", cwd=tmp_path, env=env)
    statuses = {p["id"]: p["status"] for p in json.loads(out)}
    assert (
        statuses["core"] == "loaded"
        and statuses["demo"] == "blocked"
        and statuses["hello"] == "blocked"
    )


async def test_prepare_reports_progress_and_failures(tmp_path):
    site = tmp_path / "site"
    fake_distribution(
        site,
        "hark_prep_dist",
        {"good": "hark_prep_good", "bad": "hark_prep_bad", "typed": "hark_prep_typed:plugin"},
        {
            "hark_prep_good": """
                import asyncio
                async def prepare(progress):
                    progress("fetching model", 0.5)
                    await asyncio.sleep(0)
                    progress("model ready", 1.0)
            """,
            "hark_prep_bad": """
                def prepare():
                    raise RuntimeError("disk full")
            """,
            "hark_prep_typed": """
                import hark

                class Settings(hark.Settings):
                    model: str = hark.setting("small", env="PREP_MODEL", description="m")
                    size: int = hark.setting(1, description="s")

                def prepare(progress, settings):
                    progress(f"would fetch {settings.model} x{settings.size}")

                plugin = hark.Plugin(description="typed", settings=Settings, prepare=prepare)
            """,
        },
    )
    (tmp_path / "bot.toml").write_text("[plugin.typed]\nmodel = 'from-toml'\nsize = 3\n")
    env = clean_env(PYTHONPATH=str(site), HARK_LOAD_PLUGINS="good,bad,typed", PREP_MODEL="env")
    code, out, err = await run_bot("prepare", cwd=tmp_path, env=env)
    assert code == 1, err
    assert "Traceback" not in err, err
    assert "bad: FAILED: RuntimeError: disk full" in out
    assert " 50% fetching model" in out and "good: done in" in out
    # A declared plugin's prepare() gets the bot-wide settings: env beats bot.toml.
    assert "typed: would fetch env x3" in out

    code, out, _ = await run_bot("prepare", "good", cwd=tmp_path, env=env)
    assert code == 0 and "bad" not in out


def test_pip_target_maps_ids_paths_and_requirements(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert pip_target("llm_ollama") == "hark-llm-ollama"
    (tmp_path / "plugins" / "llm_ollama").mkdir(parents=True)
    (tmp_path / "plugins" / "llm_ollama" / "pyproject.toml").write_text("")
    assert pip_target("llm_ollama") == str(Path("plugins") / "llm_ollama")
    assert pip_target("hark-twitch==0.2") == "hark-twitch==0.2"
    assert pip_target("./some/path") == "./some/path"


@pytest.mark.skipif(
    not os.environ.get("HARK_WHEELHOUSE"), reason="scripts/test builds the wheelhouse"
)
async def test_fresh_venv_with_only_core(tmp_path):
    """`pip install ./core` alone in a new virtualenv gives a working `bot` (offline install)."""
    venv = tmp_path / "venv"
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "venv", str(venv))
    assert await proc.wait() == 0
    py = venv / "bin" / "python"
    core = Path(__file__).resolve().parents[2]
    proc = await asyncio.create_subprocess_exec(
        str(py),
        "-m",
        "pip",
        "install",
        "-q",
        "--no-index",
        "--find-links",
        os.environ["HARK_WHEELHOUSE"],
        str(core),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 300)
    assert proc.returncode == 0, out.decode()
    bot = venv / "bin" / "bot"
    for args in (["--help"], ["plugins"]):
        proc = await asyncio.create_subprocess_exec(
            str(bot),
            *args,
            cwd=tmp_path,
            env=clean_env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
    listed = {line.split()[0] for line in out.decode().splitlines() if line.strip()}
    # nothing but the core and its built-in plugins is installed there
    assert listed == {"core", "chat", "persona", "history", "voice", "speech"}
    # ...and no test kit: hark.testing and its pytest plugin come with hark-testing only.
    check = (
        "import importlib.util, importlib.metadata as m; import hark;"
        "assert importlib.util.find_spec('hark.testing') is None;"
        "assert not [e for e in m.entry_points(group='pytest11') if e.value.startswith('hark')]"
    )
    proc = await asyncio.create_subprocess_exec(
        str(py), "-c", check, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()


@pytest.mark.skipif(
    not os.environ.get("HARK_WHEELHOUSE"), reason="scripts/test builds the wheelhouse"
)
def test_the_hark_wheel_ships_no_test_code():
    import zipfile

    wheel = next(Path(os.environ["HARK_WHEELHOUSE"]).glob("hark-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.startswith("hark/testing") or "/tests/" in n]
    assert "hark/__init__.py" in names and "hark/api.py" in names
    kit = next(Path(os.environ["HARK_WHEELHOUSE"]).glob("hark_testing-*.whl"))
    kit_names = zipfile.ZipFile(kit).namelist()
    assert "hark/testing/harness.py" in kit_names
    assert not [n for n in kit_names if n.startswith("hark/") and not n.startswith("hark/testing")]


SLOW_LLM = '''
    """A generator that streams slowly, so a reply is still being written when killed."""
    from hark import hookimpl
    from hark.testing.fakes import FakeGenerator

    @hookimpl
    def register_generators(register):
        register(FakeGenerator("word " * 200, chunk_size=5, delay=0.1))
'''


async def test_a_reply_left_half_written_by_kill_9_is_marked_cut_off(tmp_path, discord_server):
    guild = discord_server.create_guild("Ops")
    channel = discord_server.create_text_channel(guild, "general")
    member = discord_server.create_member(guild, "alice")
    site = tmp_path / "site"
    fake_distribution(
        site, "slow_llm_dist", {"slow_llm": "slow_llm_mod"}, {"slow_llm_mod": SLOW_LLM}
    )
    env = clean_env(
        PYTHONPATH=str(site),
        DISCORD_BOT_TOKEN=discord_server.bot_token,
        DISCORD_API_BASE=discord_server.api_base,
        HARK_DATA_DIR=str(tmp_path / "state"),
        HARK_SYNC_COMMANDS="false",
        HARK_LOAD_PLUGINS="slow_llm",  # not the installed LLM plugins
        BOT_TRIGGER_NAMES="robot",
        CHAT_EDIT_INTERVAL="0.2",
    )

    def start():
        return asyncio.create_subprocess_exec(
            *BOT,
            "run",
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )

    proc = await start()
    try:
        async with asyncio.timeout(30):
            while not discord_server.connected_sessions:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        await discord_server.post_message(channel, member, "robot tell me a long story")
        reply = await discord_server.wait_for_message(
            channel, author=discord_server.bot_user, timeout=15
        )
        async with asyncio.timeout(10):
            while len(reply.edits) < 2:  # streaming, well before the end
                await asyncio.sleep(0.05)
        proc.kill()  # kill -9: no cleanup at all
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert reply.content.endswith("…")
    words = reply.content.count("word")

    proc = await start()
    try:
        async with asyncio.timeout(30):
            while not reply.content.endswith("[cut off]"):
                await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0
    assert reply.content.count("word") == words and "…" not in reply.content
    assert "Traceback" not in err.decode()
    with sqlite3.connect(tmp_path / "state" / "hark.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM inflight_reply").fetchone() == (0,)
        # the failed turn is not in history
        assert db.execute("SELECT COUNT(*) FROM history").fetchone() == (0,)


COUNTING_LLM = '''
    """An instant generator that says how many messages its prompt held."""
    from hark import hookimpl
    from hark.testing.fakes import FakeGenerator

    @hookimpl
    def register_generators(register):
        register(FakeGenerator(lambda messages: f"seen {len(messages)}", chunk_size=1000))
'''


async def test_history_written_behind_the_reply_survives_sigterm_right_after_it(
    tmp_path, discord_server
):
    """History is written behind the reply, in batches: SIGTERM straight after a
    reply still leaves the exchange in the database, and the next run's model sees it."""
    guild = discord_server.create_guild("Ops")
    channel = discord_server.create_text_channel(guild, "general")
    member = discord_server.create_member(guild, "alice")
    site = tmp_path / "site"
    fake_distribution(
        site,
        "counting_llm_dist",
        {"counting_llm": "counting_llm_mod"},
        {"counting_llm_mod": COUNTING_LLM},
    )
    env = clean_env(
        PYTHONPATH=str(site),
        DISCORD_BOT_TOKEN=discord_server.bot_token,
        DISCORD_API_BASE=discord_server.api_base,
        HARK_DATA_DIR=str(tmp_path / "state"),
        HARK_SYNC_COMMANDS="false",
        HARK_LOAD_PLUGINS="counting_llm",
        BOT_TRIGGER_NAMES="robot",
        CHAT_RATE_LIMIT="0",
    )

    async def one_turn(text: str) -> str:
        identified = discord_server.identify_count
        proc = await asyncio.create_subprocess_exec(
            *BOT,
            "run",
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(30):
                while discord_server.identify_count <= identified:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # guilds and channels reached the bot
            await discord_server.post_message(channel, member, text)
            reply = await discord_server.wait_for_message(
                channel,
                author=discord_server.bot_user,
                timeout=15,
                check=lambda m: m.content.startswith("seen") and m.id not in seen,
            )
            proc.send_signal(signal.SIGTERM)  # straight after the reply
            _, err = await asyncio.wait_for(proc.communicate(), 20)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode == 0, err.decode()
        assert "Traceback" not in err.decode()
        seen.add(reply.id)
        return reply.content

    seen: set[int] = set()
    assert await one_turn("robot hello") == "seen 2"  # the persona and the message
    with sqlite3.connect(tmp_path / "state" / "hark.sqlite3") as db:
        rows = db.execute("SELECT role, content FROM history ORDER BY id").fetchall()
    assert rows == [("user", "robot hello"), ("assistant", "seen 2")]
    assert not (tmp_path / "state" / "history.pending.jsonl").exists()
    # The next run reads it: persona, the two history rows, the new message.
    assert await one_turn("robot again") == "seen 4"
