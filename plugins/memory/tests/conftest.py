"""Fixtures for the memory plugin's tests (the helpers are in memory_support.py)."""

from __future__ import annotations

import pytest
from memory_support import Brain


@pytest.fixture
def brain() -> Brain:
    return Brain()
