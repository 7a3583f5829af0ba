"""Importing the first-party plugins loads no model runtime, numeric library or SDK.

Each probe runs in a fresh interpreter and records ``sys.modules`` once the plugins
are imported: every heavy library below loads when a model or client is first needed
(or at warm-up / ``bot prepare``), not with the plugin, so ``bot plugins`` and an idle
bot stay small (issue 17: idle RSS <= 100 MB; ``bench/bench_idle.py`` measures it).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import textwrap
from importlib.metadata import entry_points

#: Top-level modules no plugin may import when it is imported, and what needs each.
HEAVY = {
    "ctranslate2": "stt_whisper's local model",
    "faster_whisper": "stt_whisper's local model",
    "av": "faster-whisper's audio decoding",
    "tokenizers": "faster-whisper's tokenizer",
    "huggingface_hub": "stt_whisper's model downloads",
    "onnxruntime": "turn_smart's models",
    "piper": "tts_piper's voice",
    "numpy": "audio conversion (hark.audio), stt_whisper, turn_smart",
    "soxr": "resampling (hark.audio), turn_smart",
    "scipy": "(nothing first-party)",
    "openai": "llm_openrouter's client, stt_whisper's OpenAI mode",
    "ollama": "llm_ollama's client",
    "httpx": "the ollama and elevenlabs clients",
    "elevenlabs": "tts_elevenlabs's client",
    "azure": "(tts_azure speaks REST through aiohttp: no SDK)",
    "mcp": "mcp's sessions",
    "httpx2": "mcp's HTTP transport",
    "starlette": "the MCP SDK's server side",
    "uvicorn": "the MCP SDK's server side",
    "twitchAPI": "twitch's Helix client",
}
# Not heavy, or loaded by the core whatever the plugins do: pydantic (settings models),
# aiohttp (discord.py's), discord itself (the Cogs are listed).

PROBE = textwrap.dedent(
    """
    import json, os, sys
    from importlib.metadata import entry_points
    for ep in entry_points(group="hark"):
        if ep.value.startswith("hark"):  # first-party: hark.* built-ins and hark_* plugins
            ep.load()
    with open(os.environ["HARK_PROBE_MODULES"], "w") as f:
        json.dump(sorted(sys.modules), f)
    """
)

CLI_PROBE = textwrap.dedent(
    """
    import json, os, sys
    from hark.cli import main
    code = main(sys.argv[1:])
    with open(os.environ["HARK_PROBE_MODULES"], "w") as f:
        json.dump(sorted(sys.modules), f)
    sys.exit(code)
    """
)


def first_party() -> set[str]:
    return {
        ep.name
        for ep in entry_points(group="hark")
        if ep.value.startswith("hark_") and ep.name != "hello"
    }


def heavy(modules: list[str]) -> dict[str, str]:
    return {top: HEAVY[top] for top in {m.split(".")[0] for m in modules} if top in HEAVY}


async def probe(tmp_path, code: str, *args: str) -> tuple[str, list[str]]:
    record = tmp_path / "modules.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "HARK_", "BOT_"))}
    env.update(HARK_DATA_DIR=str(tmp_path / "data"), HARK_PROBE_MODULES=str(record))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        *args,
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    return out.decode(), json.loads(record.read_text())


def test_every_first_party_plugin_is_installed():
    # Otherwise the probes below would pass by importing nothing.
    assert {
        "llm_ollama",
        "llm_openrouter",
        "mcp",
        "stt_whisper",
        "tts_azure",
        "tts_elevenlabs",
        "tts_piper",
        "turn_smart",
        "twitch",
    } <= first_party()


async def test_importing_every_plugin_loads_no_heavy_library(tmp_path):
    _, modules = await probe(tmp_path, PROBE)
    assert {f"hark_{name}" for name in first_party()} <= set(modules)
    assert heavy(modules) == {}


async def test_bot_plugins_lists_every_plugin_without_loading_a_heavy_library(tmp_path):
    out, modules = await probe(tmp_path, CLI_PROBE, "plugins", "--json")
    listing = {p["id"]: p for p in json.loads(out)}
    for name in first_party():
        assert listing[name]["status"] == "loaded", listing[name]
        assert listing[name]["cogs"], name  # the Cog class was imported and listed
    assert heavy(modules) == {}
