"""`bot prepare`: the module-level prepare() loads the model and proves it runs."""

from __future__ import annotations

import asyncio

import hark_stt_whisper as plugin
import pytest
from hark_stt_whisper import WhisperSettings

from hark import ConfigurationError
from hark.cli import _call_prepare


async def test_prepare_reports_progress(whisper_model):
    seen: list[tuple[str, float | None]] = []
    await plugin.prepare(lambda message, fraction=None: seen.append((message, fraction)))
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert "`bundled`" in seen[0][0]
    assert "works" in seen[-1][0]


async def test_prepare_without_progress(whisper_model):
    await plugin.prepare()


def test_bot_prepare_calls_it(whisper_model, tmp_path):
    # The CLI's own calling convention: progress and the bot-wide settings as keywords.
    messages: list[str] = []
    progress = lambda message, fraction=None: messages.append(message)  # noqa: E731
    asyncio.run(_call_prepare(plugin.prepare, progress, WhisperSettings()))
    assert len(messages) == 3
    # It prepares the model the bot would use (bot.toml's, the owner's), not only the
    # environment's.
    missing = WhisperSettings(model=str(tmp_path / "from-bot-toml"))
    with pytest.raises(ConfigurationError, match="from-bot-toml` does not exist"):
        asyncio.run(_call_prepare(plugin.prepare, progress, missing))


async def test_prepare_fails_clearly_on_a_missing_model(monkeypatch, tmp_path):
    monkeypatch.setenv("WHISPER_MODEL", str(tmp_path / "missing"))
    with pytest.raises(ConfigurationError, match="does not exist"):
        await plugin.prepare()


async def test_prepare_fails_clearly_on_an_unreachable_size_name(monkeypatch, tmp_path):
    monkeypatch.setenv("WHISPER_MODEL", "medium.en")
    monkeypatch.setenv("WHISPER_CACHE_DIR", str(tmp_path))
    with pytest.raises(ConfigurationError, match=r"`medium\.en`"):
        await plugin.prepare()
