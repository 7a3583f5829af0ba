"""Real speech for the voice tests, made with espeak-ng (installed by scripts/test)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from hark.audio import convert, read_wav
from hark.providers import AudioClip


def espeak(text: str, tmp_path_factory) -> AudioClip:
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed (scripts/test installs it)")
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), text], check=True)
    return convert(read_wav(path.read_bytes()), 48_000, 2)


@pytest.fixture(scope="session")
def speech(tmp_path_factory) -> AudioClip:
    """About two seconds of real speech, 48 kHz stereo like Discord delivers."""
    return espeak("please turn on the kitchen lights", tmp_path_factory)


@pytest.fixture(scope="session")
def two_sentences(tmp_path_factory) -> AudioClip:
    return espeak("The weather is nice today. Let us go for a walk.", tmp_path_factory)
