"""Settings parsing and resolution, and the Whisper feature front end."""

from __future__ import annotations

import numpy as np
import pytest
from hark_turn_smart import features
from hark_turn_smart.settings import SmartTurnSettings, TurnConfig, build
from pydantic import ValidationError


@pytest.mark.parametrize(
    ("key", "text", "value"),
    [
        ("pause_ms", "250", 250),
        ("pause_ms", "250ms", 250),
        ("max_wait_ms", "3000", 3000),
        ("threshold", "0.65", 0.65),
        ("threshold", "65%", 0.65),
        ("speech_threshold", "0.4", 0.4),
        ("min_speech_ms", "0", 0),
        ("min_speech_ms", "voice", None),
    ],
)
def test_typed_values(key, text, value):
    parsed = getattr(SmartTurnSettings.model_validate({key: text}), key)
    assert parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("pause_ms", "20"),
        ("pause_ms", "250.5"),  # a whole number of milliseconds
        ("max_wait_ms", "forever"),
        ("threshold", "1.5"),
        ("threshold", True),  # a bool is not a probability
        ("speech_threshold", "nan"),
        ("min_speech_ms", 6000),
        ("silence_ms", "300"),  # webrtcvad's, not this plugin's
    ],
)
def test_refused_values(key, value):
    with pytest.raises(ValidationError):
        SmartTurnSettings.model_validate({key: value})


def test_build_reads_the_plugin_and_the_voice_settings():
    voice = {"min_speech_ms": 400, "pre_roll_ms": 100, "max_utterance_ms": 20_000, "x": 1}
    config = build(SmartTurnSettings(pause_ms=300, max_wait_ms=250, threshold=0.6), voice)
    assert config == TurnConfig(
        pause_ms=300,
        max_wait_ms=300,  # never below pause_ms
        threshold=0.6,
        speech_threshold=0.5,
        min_speech_ms=400,  # unset here: the voice setting
        pre_roll_ms=100,
        max_utterance_ms=20_000,
    )
    assert build(SmartTurnSettings()) == TurnConfig()
    assert build(SmartTurnSettings(min_speech_ms=0), voice).min_speech_ms == 0


def test_features_have_the_models_shape_and_ignore_loudness():
    rng = np.random.default_rng(3)
    audio = (rng.standard_normal(16_000) * 0.05).astype(np.float32)
    fitted = features.fit(audio)
    # Padded in front: the speech sits at the end of the window, as in training.
    assert fitted.shape == (features.SAMPLES,)
    assert not fitted[: -audio.size].any() and np.array_equal(fitted[-audio.size :], audio)
    assert np.array_equal(features.fit(np.tile(audio, 9)), np.tile(audio, 9)[-features.SAMPLES :])

    mel = features.log_mel(fitted)
    assert mel.shape == (80, 800) and mel.dtype == np.float32
    assert mel.min() >= -1.5 and mel.max() <= 2.5
    # Waveform normalisation: the same audio 10x louder has the same features.
    np.testing.assert_allclose(features.log_mel(features.fit(audio * 10)), mel, atol=1e-4)
    with pytest.raises(ValueError, match="128000 samples"):
        features.log_mel(audio)


def test_mel_filters_match_whisper():
    filters = features.mel_filters()
    assert filters.shape == (80, 201)
    # Centres run linearly below 1 kHz, logarithmically above, from 0 to 8 kHz.
    hz = np.linspace(0, 8000, 201)
    centres = hz[filters.argmax(axis=1)]
    assert np.all(np.diff(centres) >= 0) and centres[0] <= 40 and centres[-1] >= 7600
    # Whisper's bank (librosa.filters.mel(sr=16000, n_fft=400, n_mels=80), Slaney-normalised):
    # when written, this matched pipecat-ai's copy of transformers' code bit for bit.
    assert filters[0].max() == pytest.approx(0.0248626, rel=1e-5)
    assert filters[79].max() == pytest.approx(0.0031647, rel=1e-4)
    assert filters.sum() == pytest.approx(1.9990241, rel=1e-6)


def test_prepare_loads_and_runs_both_models():
    import hark_turn_smart

    said: list[tuple[str, float | None]] = []
    hark_turn_smart.prepare(
        progress=lambda message, fraction=None: said.append((message, fraction))
    )
    assert said[0] == ("models: silero_vad.onnx, smart-turn-v3.2-cpu.onnx", 0.0)
    assert said[-1][0].startswith("first inference in ") and said[-1][1] == 1.0
