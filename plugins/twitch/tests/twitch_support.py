"""Shared helpers for the Twitch plugin's tests (imported by name, like a conftest)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

import hark_twitch
from fake_twitch import FakeTwitch
from hark_twitch import TwitchActivityContext, TwitchConfig, TwitchSettings

from hark.testing.fakes import fake_plugin

TOKEN = "twitch-user-token-1f2e3d4c5b6a"
REFRESH = "twitch-refresh-token-9a8b7c6d5e"
CHANNEL = "streamer"
# Retry fast: tests must not sleep through real backoff.
FAST = {"TWITCH_BACKOFF_BASE": "0.05", "TWITCH_BACKOFF_MAX": "0.4"}
CHAT = {"trigger_names": ["robot"], "edit_interval": 0.05, "rate_limit": "0"}


def settings_from(environ: dict[str, str]) -> TwitchSettings:
    """The plugin's settings as a bot without bot.toml or stored values reads them:
    the defaults and ``environ`` (through the core's resolution, as outside a bot)."""
    provider = TwitchActivityContext()
    provider.environ = environ
    resolved = provider.resolve()
    assert resolved is not None
    return resolved.values


def config_from(environ: dict[str, str]) -> TwitchConfig:
    return TwitchConfig.read(settings_from(environ), environ)


def config_for(fake: FakeTwitch, token: str = TOKEN, **extra: str) -> TwitchConfig:
    return config_from(fake.env(token, CHANNEL, **{**FAST, **extra}))


def set_env(monkeypatch: Any, values: dict[str, str]) -> None:
    """Exactly ``values`` as the TWITCH_* environment (the developer's own never leak in)."""
    for name in list(os.environ):
        if name.startswith("TWITCH_"):
            monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def plugins(generator: Any) -> dict[str, Any]:
    return {"twitch": hark_twitch.plugin, "fake_llm": fake_plugin(generator)}


async def eventually(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def system_text(request: Any) -> str:
    """The merged system message of a generation request."""
    return "\n".join(m.content for m in request.messages if m.role == "system")
