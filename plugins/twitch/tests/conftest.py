"""Fixtures for the Twitch plugin's tests: a loopback Twitch and connections to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from fake_twitch import FakeTwitch
from hark_twitch import TwitchConnection, TwitchEvent
from twitch_support import CHANNEL, TOKEN, config_for


@pytest.fixture
async def twitch() -> AsyncIterator[FakeTwitch]:
    async with FakeTwitch() as fake:
        fake.add_user(CHANNEL, "StreamerName")
        fake.add_token(TOKEN, CHANNEL)
        yield fake


@pytest.fixture
def streamer(twitch: FakeTwitch):
    return twitch.user(CHANNEL)


@pytest.fixture
async def connect(twitch: FakeTwitch) -> AsyncIterator[Callable[..., TwitchConnection]]:
    """``connect(**env)``: a started connection to ``twitch``; its events are in ``.events``."""
    made: list[TwitchConnection] = []

    def make(token: str = TOKEN, **env: str) -> TwitchConnection:
        events: list[TwitchEvent] = []
        connection = TwitchConnection(config_for(twitch, token, **env), on_event=events.append)
        connection.events = events  # type: ignore[attr-defined]
        connection.start()
        made.append(connection)
        return connection

    yield make
    for connection in made:
        await connection.stop()


def pytest_collection_modifyitems(items: list[Any]) -> None:
    # Every test here talks to loopback servers: bound them in time.
    for item in items:
        if "plugins/twitch" in str(item.path) and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(60))
