"""Turn detection with real speech fed as Discord delivers it (20 ms stereo frames)."""

from __future__ import annotations

import numpy as np
import pytest

from hark.providers import AudioClip
from hark.voice.turns import TurnDetector, TurnSettings, downmix

FRAME = 3840  # 20 ms of 48 kHz stereo s16le


def frames(clip: AudioClip) -> list[bytes]:
    pcm = clip.pcm + b"\x00" * (-len(clip.pcm) % FRAME)
    return [pcm[i : i + FRAME] for i in range(0, len(pcm), FRAME)]


def silence(ms: int) -> list[bytes]:
    return [b"\x00" * FRAME] * (ms // 20)


def run(detector: TurnDetector, chunks: list[bytes], start: float = 100.0):
    """Feed frames at 20 ms intervals of a fake clock; return utterances and the end time."""
    out, now = [], start
    for chunk in chunks:
        utterance = detector.feed(chunk, now=now)
        if utterance:
            out.append(utterance)
        now += 0.02
    return out, now


def onset_ms(clip: AudioClip) -> int:
    """Where sound starts in a mono clip (first 20 ms frame above a small energy floor)."""
    samples = np.frombuffer(clip.pcm, dtype="<i2")
    for i in range(0, len(samples), 960):
        if np.abs(samples[i : i + 960]).mean() > 200:
            return i // 960 * 20
    return -1


def test_one_utterance_with_pre_roll(speech):
    detector = TurnDetector(1)
    utterances, _ = run(detector, silence(500) + frames(speech) + silence(1000))
    assert len(utterances) == 1
    utterance = utterances[0]
    assert utterance.reason == "silence" and utterance.user_id == 1
    # The clip keeps ~300 ms before the VAD fired, so the first phoneme survives.
    assert utterance.clip.sample_rate == 48_000 and utterance.clip.channels == 1
    spoken = speech.duration
    assert spoken - 0.3 < utterance.clip.duration < spoken + 0.3 + 0.7 + 0.3
    assert utterance.speech_ms >= 500


def test_pre_roll_keeps_the_onset(speech):
    utterance = run(
        TurnDetector(1, TurnSettings(pre_roll_ms=300)),
        silence(600) + frames(speech) + silence(1000),
    )[0][0]
    # The VAD fires a little after the sound starts; the pre-roll keeps that start.
    assert 0 < onset_ms(utterance.clip) <= 320
    without = run(
        TurnDetector(1, TurnSettings(pre_roll_ms=20)), silence(600) + frames(speech) + silence(1000)
    )[0][0]
    assert onset_ms(without.clip) < onset_ms(utterance.clip)


def test_idle_timer_ends_an_utterance_when_packets_stop(speech):
    detector = TurnDetector(1)
    utterances, now = run(detector, frames(speech))  # no trailing silence packets at all
    assert utterances == []
    assert detector.speaking
    assert detector.poll(now + 0.3) is None  # not yet
    utterance = detector.poll(now + 0.75)
    assert utterance is not None and utterance.reason == "idle"


def test_short_noise_is_dropped():
    rng = np.random.default_rng(0)
    burst = (rng.normal(0, 8000, 960 * 2 * 6)).astype("<i2").tobytes()  # 120 ms of noise
    detector = TurnDetector(1, TurnSettings(aggressiveness=0))
    utterances, _ = run(
        detector,
        silence(200) + [burst[i : i + FRAME] for i in range(0, len(burst), FRAME)] + silence(1000),
    )
    assert utterances == []


def test_a_short_pause_does_not_split_a_sentence(two_sentences):
    # espeak's pause between the two sentences is well under the 700 ms default.
    utterances, _ = run(TurnDetector(1), frames(two_sentences) + silence(1000))
    assert len(utterances) == 1
    # ...while a very short trailing-silence setting splits at the pause.
    split, _ = run(
        TurnDetector(1, TurnSettings(silence_ms=60, min_speech_ms=100)),
        frames(two_sentences) + silence(1000),
    )
    assert len(split) >= 2


def test_max_length_cuts_long_speech(speech):
    detector = TurnDetector(1, TurnSettings(max_utterance_ms=1000, min_speech_ms=100))
    utterances, _ = run(detector, frames(speech) + silence(1000))
    assert utterances[0].reason == "max_length"
    assert utterances[0].clip.duration == pytest.approx(1.0, abs=0.05)


def test_speech_ms_grows_while_speaking(speech):
    detector = TurnDetector(1)
    assert detector.speech_ms == 0
    run(detector, frames(speech)[:40])
    assert detector.speaking and detector.speech_ms >= 200


def test_downmix_and_bad_frames():
    left_right = np.array([[1000, 3000], [-2000, 0]], dtype="<i2").tobytes()
    assert np.frombuffer(downmix(left_right), "<i2").tolist() == [2000, -1000]
    assert TurnDetector(1).feed(b"\x00" * 100, now=0) is None  # partial frame ignored


def test_settings_are_validated():
    with pytest.raises(ValueError):
        TurnSettings(aggressiveness=5)
