"""`bot plugins` and `bot console` don't load the voice stack.

Each runs in a fresh interpreter that records ``sys.modules`` when the command
returns. discord.py itself is loaded (the built-ins' Cogs are listed), and with it
its own voice modules; what must stay out is voice receive (discord-ext-voice-recv)
and Hark's voice session machinery. ``hark.voice.turns`` is the default turn
detector, a provider the voice plugin registers, and may load.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import textwrap

PROBE = textwrap.dedent(
    """
    import json, os, sys
    from hark.cli import main
    code = main(sys.argv[1:])
    with open(os.environ["HARK_PROBE_MODULES"], "w") as f:
        json.dump(sorted(sys.modules), f)
    sys.exit(code)
    """
)
ALLOWED_VOICE = {"hark.voice", "hark.voice.turns"}

ECHO_PLUGIN = '''
"""Echo: a fake LLM that says back the last message."""
from hark import hookimpl
from hark.testing.fakes import EchoGenerator

@hookimpl
def register_generators(register):
    register(EchoGenerator())
'''


def echo_distribution(root) -> None:
    """An installed distribution with the ``echo`` plugin, on a PYTHONPATH entry."""
    dist = root / "hark_lazy_echo-0.1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hark_lazy_echo\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text("[hark]\necho = hark_lazy_echo\n")
    (root / "hark_lazy_echo.py").write_text(ECHO_PLUGIN)


def voice_stack(modules: list[str]) -> list[str]:
    return [
        m
        for m in modules
        if m.startswith("discord.ext.voice_recv")
        or (m.startswith("hark.voice.") and m not in ALLOWED_VOICE)
    ]


async def probe(tmp_path, *args: str, stdin: str = "") -> tuple[int, str, list[str]]:
    site = tmp_path / "site"
    if not site.exists():
        echo_distribution(site)
    record = tmp_path / "modules.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "HARK_", "BOT_"))}
    env.update(
        PYTHONPATH=str(site),
        HARK_LOAD_PLUGINS="echo",
        HARK_DATA_DIR=str(tmp_path / "data"),
        HARK_PROBE_MODULES=str(record),
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PROBE,
        *args,
        cwd=tmp_path,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 60)
    assert proc.returncode == 0, err.decode()
    return proc.returncode, out.decode(), json.loads(record.read_text())


async def test_bot_plugins_lists_voice_without_loading_the_voice_stack(tmp_path):
    _, out, modules = await probe(tmp_path, "plugins", "--json")
    listing = {p["id"]: p for p in json.loads(out)}
    assert listing["voice"]["cogs"] == ["VoiceCog"] and listing["echo"]["status"] == "loaded"
    assert "hark.cogs.voice" in modules  # the Cog was listed...
    assert voice_stack(modules) == []  # ...without what a session needs


async def test_bot_console_answers_without_loading_the_voice_stack(tmp_path):
    _, out, modules = await probe(tmp_path, "console", stdin="hello there\n")
    assert "hello there" in out.split("> ", 1)[-1]  # the echo LLM answered
    assert voice_stack(modules) == []
