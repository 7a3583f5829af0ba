"""The docs stay in step with the code."""

from __future__ import annotations

import re
from pathlib import Path

from hark.config import FIELDS

ROOT = Path(__file__).resolve().parents[1]


def test_code_blocks_with_a_file_match_that_file():
    """A fenced block written as ```lang file=PATH must be PATH's exact content."""
    for doc in (ROOT / "docs").glob("*.md"):
        text = doc.read_text(encoding="utf-8")
        for path, body in re.findall(r"```\w* file=(\S+)\n(.*?)```", text, flags=re.S):
            assert (ROOT / path).read_text(encoding="utf-8") == body, f"{doc.name}: {path} is stale"


def test_configuration_doc_names_every_setting():
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = [spec.env for spec in FIELDS.values() if f"`{spec.env}`" not in text]
    assert not missing, f"docs/configuration.md does not mention {missing}"


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "scripts/test" in readme
    assert re.search(r"^exec scripts/test\s*$", ci, flags=re.M)
