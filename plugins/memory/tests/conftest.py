"""Fixtures for the memory plugin's tests (the helpers are in memory_support.py).

``db_config`` is the harness config naming the bot's database: {} for the default
SQLite file, or ``database_url`` of a fresh PostgreSQL database (the session's
throwaway server, from hark.testing). Tests that take it run on both.
"""

from __future__ import annotations

from typing import Any

import pytest
from memory_support import Brain


@pytest.fixture
def brain() -> Brain:
    return Brain()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "sqlite":
        return {}
    return {"database_url": request.getfixturevalue("postgres_url")}
