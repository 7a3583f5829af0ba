"""``bot prepare tts_azure``: the plugin's check of its configuration against the server."""

from __future__ import annotations

import hark_tts_azure as plugin
import pytest
from azure_support import KEY

from hark.providers.errors import ConfigurationError, ProviderStatusError


@pytest.fixture
def env(azure, monkeypatch):
    monkeypatch.setenv("AZURE_SPEECH_KEY", KEY)
    monkeypatch.setenv("AZURE_SPEECH_ENDPOINT", azure.url)
    monkeypatch.delenv("AZURE_SPEECH_REGION", raising=False)
    monkeypatch.delenv("AZURE_SPEECH_VOICE", raising=False)
    return monkeypatch


async def test_prepare_checks_key_and_voice(env, azure) -> None:
    messages: list[tuple[str, float | None]] = []
    await plugin.prepare(
        progress=lambda message, fraction=None: messages.append((message, fraction))
    )
    assert messages[-1][1] == 1.0
    assert "10 voices" in messages[-1][0] and "en-US-AmberNeural" in messages[-1][0]
    assert azure.voices_requests[-1].key == KEY
    assert all(KEY not in m for m, _ in messages)


async def test_prepare_reports_a_rejected_key(env, azure) -> None:
    env.setenv("AZURE_SPEECH_KEY", "9" * 32)
    with pytest.raises(ProviderStatusError) as caught:
        await plugin.prepare()
    assert caught.value.status == 401 and "9" * 32 not in str(caught.value)


async def test_prepare_reports_an_unknown_default_voice(env) -> None:
    env.setenv("AZURE_SPEECH_VOICE", "en-US-NobodyNeural")
    with pytest.raises(ConfigurationError, match="en-US-NobodyNeural"):
        await plugin.prepare()


async def test_prepare_without_configuration(env, azure) -> None:
    env.delenv("AZURE_SPEECH_ENDPOINT")
    with pytest.raises(ConfigurationError, match="AZURE_SPEECH_REGION"):
        await plugin.prepare()
    assert azure.requests == []
