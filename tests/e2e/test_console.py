"""`bot console`: the same persona + history + generator path, in a terminal."""

from __future__ import annotations

import asyncio
import os
import sys

from fake_ollama import FakeOllama


async def console(tmp_path, lines: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hark.cli",
        "console",
        cwd=tmp_path,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(lines.encode()), 60)
    return proc.returncode, out.decode(), err.decode()


async def test_console_talks_through_the_pipeline_and_keeps_history(tmp_path):
    replies = iter(["Nice to meet you, Sam.", "You are Sam."])
    async with FakeOllama(reply=lambda *_: next(replies)) as ollama:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("HARK_", "OLLAMA_", "SYSTEM_"))
        }
        env.update(
            OLLAMA_HOST=ollama.url,
            HARK_LOAD_PLUGINS="llm_ollama",
            HARK_DATA_DIR=str(tmp_path / "data"),
            SYSTEM_PROMPT="You are a terse console assistant.",
        )
        code, out, err = await console(tmp_path, "my name is Sam\nwho am I?\n", env)
        assert code == 0, err
        assert "Nice to meet you, Sam." in out and "You are Sam." in out
        second = ollama.chat_requests[-1]["messages"]
        assert second[0] == {"role": "system", "content": "You are a terse console assistant."}
        contents = [m["content"] for m in second]
        assert any(c.endswith("my name is Sam") for c in contents)
        assert "Nice to meet you, Sam." in contents

        # history lives in the database: a new console session remembers, until /reset
        replies = iter(["Still Sam."])
        code, out, _ = await console(tmp_path, "/reset\nwho am I?\n", env)
        assert "(history cleared: 4 entries)" in out
        assert [m["role"] for m in ollama.chat_requests[-1]["messages"]] == ["system", "user"]


async def test_console_reports_an_unreachable_model_without_a_traceback(tmp_path):
    env = dict(
        os.environ,
        OLLAMA_HOST="http://127.0.0.1:9",
        HARK_LOAD_PLUGINS="llm_ollama",
        HARK_DATA_DIR=str(tmp_path / "data"),
    )
    code, out, err = await console(tmp_path, "hello\n", env)
    assert code == 0
    assert "error: Sorry, I couldn't reach `llm_ollama`" in out
    assert "Traceback" not in out + err
