"""The bounded soak (issue 9): 2,000 messages with provider faults, through bench/soak_text.py.

Real HarkBot <-> loopback Discord, real ``llm_openrouter`` (``openai`` client) <->
its loopback fake drawing 5% HTTP 500s, 2% hangs and 2% cut streams. The checks
(history exactly once per delivered reply, no failed turn in history, the bot up,
no traceback or ERROR logged, RSS flat after warm-up) live in the bench module;
this runs it once, at full size (about 40 s on two cores).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "soak_text.py"


def load_soak():
    spec = importlib.util.spec_from_file_location("hark_bench_soak_text", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
async def test_soak_2000_messages_with_provider_faults(tmp_path):
    soak = load_soak()
    result = await soak.run_soak(
        messages=2000, members=20, channels=10, seed=1, timeout=240, data_dir=tmp_path / "data"
    )
    print(result.report())
    assert result.ok, "soak failed:\n" + "\n".join(result.failures + result.evidence[:20])
