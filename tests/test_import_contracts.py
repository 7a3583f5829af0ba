"""The import contracts in pyproject.toml hold (import-linter), and stay complete.

Each contract runs on its own, so a broken one fails under its own id with
import-linter's report: the import chain and the line that breaks it. The layers
and the reasons for each ignored import: docs/architecture.md.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
    "importlinter"
]
CONTRACTS = {c["id"]: c for c in CONFIG["contracts"]}
# What plugins may import besides `hark` itself: the host interface, the audio
# helpers and the test kit.
PUBLIC = {"hark.api", "hark.audio", "hark.testing"}  # hark.testing: in tests only


def lint_imports(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from importlinter.cli import lint_imports_command; lint_imports_command()",
            "--no-cache",
            "--no-logo",
            *args,
        ],
        cwd=ROOT,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "120"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("contract", sorted(CONTRACTS))
def test_contract_is_kept(contract):
    result = lint_imports("--contract", contract)
    code, report = result.returncode, result.stdout + result.stderr
    assert code == 0 and "KEPT" in report, f"{CONTRACTS[contract]['name']}:\n{report}"


def core_modules() -> set[str]:
    """Every module and package directly under hark."""
    src = ROOT / "core" / "src" / "hark"
    return {
        f"hark.{p.stem}"
        for p in src.iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()
    }


def plugin_packages() -> set[str]:
    return {
        p.name
        for base in ("plugins", "examples")
        for p in (ROOT / base).glob("*/src/hark_*")
        if (p / "__init__.py").is_file()
    }


def test_every_plugin_package_is_checked():
    plugins = plugin_packages()
    assert plugins, "no plugin packages found"
    assert set(CONFIG["root_packages"]) == {"hark", *plugins}
    assert set(CONTRACTS["core-without-plugins"]["forbidden_modules"]) == plugins
    assert set(CONTRACTS["plugins-independent"]["modules"]) == plugins
    assert set(CONTRACTS["plugins-public-api"]["source_modules"]) == plugins


def test_plugins_may_import_no_core_module_but_the_public_ones():
    forbidden = set(CONTRACTS["plugins-public-api"]["forbidden_modules"])
    missing = core_modules() - PUBLIC - forbidden
    assert not missing, (
        f"{sorted(missing)}: add to plugins-public-api's forbidden_modules in pyproject.toml "
        f"(or to PUBLIC here, if plugins may import it)"
    )


def layers() -> list[list[str]]:
    """The layers contract's layers, top first, as module names (optional ones too)."""
    return [
        [f"hark.{name.strip().strip('()')}" for name in re.split(r"[:|]", layer)]
        for layer in CONTRACTS["layers"]["layers"]
    ]


def test_the_api_and_state_layers_are_the_modules_kept_from_discord():
    bottom = {m for layer in layers()[-2:] for m in layer if m in core_modules()}
    sources = set(CONTRACTS["api-without-discord"]["source_modules"])
    assert sources == bottom, (
        "api-without-discord's source_modules must be the modules of the API and State layers"
    )


def test_docs_architecture_lists_the_same_layers():
    """docs/architecture.md's table of layers says what the contract checks."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\d) [^|]*\|([^|]*)\|", text, flags=re.M)
    documented = {int(n): set(re.findall(r"`(hark\.\w+)`", mods)) for n, mods in rows}
    # Layers 6..1, top first.
    checked = {6 - i: set(layer) for i, layer in enumerate(layers())}
    assert documented == checked, "docs/architecture.md and pyproject.toml list different layers"


TEST_ONLY = ("hark.testing", "aiohttp.web", "pytest")


def test_no_plugin_ships_test_code():
    """A plugin's fakes and fixtures live in its tests/, never in its package: nothing
    under plugins/*/src imports the test kit, a web server or pytest. (import-linter
    cannot see hark.testing: it is another distribution's part of the namespace.)"""
    found = []
    for base in ("plugins", "examples"):
        for path in sorted((ROOT / base).glob("*/src/**/*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
                    if isinstance(node, ast.ImportFrom)
                    else []
                )
                if any(n == t or n.startswith(t + ".") for n in names for t in TEST_ONLY):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, f"test code inside a plugin package: {found}"
