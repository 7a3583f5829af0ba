"""Fixtures for the Piper plugin's tests: the real bundled voice, loaded once per session."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hark_tts_piper import LoadedVoice, PiperSynthesizer, load_voice, resolve_paths


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own voice settings must not leak into the tests."""
    for name in ("PIPER_MODEL", "PIPER_CONFIG"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def piper_voice() -> LoadedVoice:
    """The bundled en_US-joe-medium voice. The plugin caches it per process, so every
    synthesizer in the session shares this one load."""
    return load_voice(resolve_paths())


@pytest.fixture
def make_synthesizer(piper_voice: LoadedVoice) -> Callable[..., PiperSynthesizer]:
    """``make_synthesizer(**kwargs)``: a PiperSynthesizer registered as the plugin would be
    (id ``tts_piper``), on the bundled voice unless told otherwise."""

    def make(*args: Any, **kwargs: Any) -> PiperSynthesizer:
        synthesizer = PiperSynthesizer(*args, **kwargs)
        synthesizer.plugin_id = "tts_piper"
        return synthesizer

    return make


@pytest.fixture
def synth(make_synthesizer: Callable[..., PiperSynthesizer]) -> PiperSynthesizer:
    return make_synthesizer()


@pytest.fixture
def settings(hark_settings_store):
    """A real settings namespace for the plugin, on a SQLite database in tmp_path."""
    return hark_settings_store.for_plugin("tts_piper")
