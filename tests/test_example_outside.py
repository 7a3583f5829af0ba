"""The documented set-up is complete: examples/hello, copied to a folder outside this
repository, passes its own tests there with only the core, the test kit and the copy
(its pyproject.toml's pytest settings, no conftest of ours)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_example_plugin_passes_its_tests_outside_the_repo(tmp_path):
    copy = tmp_path / "hello"
    shutil.copytree(
        ROOT / "examples" / "hello",
        copy,
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )
    assert not str(copy.resolve()).startswith(str(ROOT))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "HARK_"))}
    # The copy's sources come first, so it is the copy that is tested (the installed
    # distribution's entry point names the same module).
    env["PYTHONPATH"] = str(copy / "src")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert " passed" in out and "failed" not in out
    # It tested the copy, not the checkout.
    check = subprocess.run(
        [sys.executable, "-c", "import hark_example_hello as h; print(h.__file__)"],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.stdout.strip().startswith(str(copy)), check.stdout + check.stderr
