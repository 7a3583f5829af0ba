"""Turn detection with real speech fed as Discord delivers it (20 ms stereo frames).

The built-in detector (:class:`hark.voice.turns.VadTurns`) reports ``speech``,
``pause``, ``resumed``, ``end`` and ``dropped`` (see hark.providers.turns).
"""

from __future__ import annotations

import numpy as np
import pytest

from hark.providers import AudioClip, TurnDetector
from hark.voice.turns import TurnSettings, VadTurns, WebRTCTurnDetector, downmix

FRAME = 3840  # 20 ms of 48 kHz stereo s16le


def frames(clip: AudioClip) -> list[bytes]:
    pcm = clip.pcm + b"\x00" * (-len(clip.pcm) % FRAME)
    return [pcm[i : i + FRAME] for i in range(0, len(pcm), FRAME)]


def trimmed(clip: AudioClip) -> list[bytes]:
    """``frames(clip)`` without its quiet tail (espeak ends with ~400 ms of near-silence)."""
    out = frames(clip)
    while out and np.sqrt(np.mean(np.frombuffer(out[-1], "<i2").astype(float) ** 2)) < 150:
        out.pop()
    return out


def silence(ms: int) -> list[bytes]:
    return [b"\x00" * FRAME] * (ms // 20)


def updates(detector: VadTurns, chunks: list[bytes], start: float = 100.0):
    """Feed frames at 20 ms intervals of a fake clock; return (time, update) pairs."""
    out, now = [], start
    for chunk in chunks:
        update = detector.feed(chunk, now=now)
        if update:
            out.append((now, update))
        now += 0.02
    return out, now


def run(detector: VadTurns, chunks: list[bytes], start: float = 100.0):
    """The utterances that ended (``end`` updates), and the end time."""
    seen, now = updates(detector, chunks, start)
    return [u.utterance for _, u in seen if u.kind == "end"], now


def onset_ms(clip: AudioClip) -> int:
    """Where sound starts in a mono clip (first 20 ms frame above a small energy floor)."""
    samples = np.frombuffer(clip.pcm, dtype="<i2")
    for i in range(0, len(samples), 960):
        if np.abs(samples[i : i + 960]).mean() > 200:
            return i // 960 * 20
    return -1


def test_one_utterance_with_pre_roll(speech):
    detector = VadTurns(1)
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
        VadTurns(1, TurnSettings(pre_roll_ms=300)),
        silence(600) + frames(speech) + silence(1000),
    )[0][0]
    # The VAD fires a little after the sound starts; the pre-roll keeps that start.
    assert 0 < onset_ms(utterance.clip) <= 320
    without = run(
        VadTurns(1, TurnSettings(pre_roll_ms=20)), silence(600) + frames(speech) + silence(1000)
    )[0][0]
    assert onset_ms(without.clip) < onset_ms(utterance.clip)


def test_idle_timer_ends_an_utterance_when_packets_stop(speech):
    detector = VadTurns(1)
    seen, now = updates(detector, trimmed(speech))  # no trailing silence packets at all
    assert [u.kind for _, u in seen] == ["speech"]
    assert detector.speaking
    assert detector.poll(now + 0.1) is None  # not yet
    pause = detector.poll(now + 0.22)  # 200 ms after the last voiced frame: a pause
    assert pause is not None and pause.kind == "pause"
    assert detector.poll(now + 0.3) is None  # one pause per silence
    update = detector.poll(now + 0.72)
    assert update is not None and update.kind == "end" and update.utterance.reason == "idle"


def test_short_noise_is_dropped():
    rng = np.random.default_rng(0)
    burst = (rng.normal(0, 8000, 960 * 2 * 6)).astype("<i2").tobytes()  # 120 ms of noise
    detector = VadTurns(1, TurnSettings(aggressiveness=0))
    seen, _ = updates(
        detector,
        silence(200) + [burst[i : i + FRAME] for i in range(0, len(burst), FRAME)] + silence(1000),
    )
    kinds = [u.kind for _, u in seen]
    assert "end" not in kinds
    # It was heard as speech (a barge-in pauses on it), then dropped as too short.
    assert kinds[0] == "speech" and kinds[-1] == "dropped"
    assert seen[-1][1].utterance.speech_ms < 250


def test_a_short_pause_does_not_split_a_sentence(two_sentences):
    # espeak's pause between the two sentences is well under the 700 ms default.
    utterances, _ = run(VadTurns(1), frames(two_sentences) + silence(1000))
    assert len(utterances) == 1
    # ...while a very short trailing-silence setting splits at the pause.
    split, _ = run(
        VadTurns(1, TurnSettings(silence_ms=60, min_speech_ms=100)),
        frames(two_sentences) + silence(1000),
    )
    assert len(split) >= 2


def test_max_length_cuts_long_speech(speech):
    detector = VadTurns(1, TurnSettings(max_utterance_ms=1000, min_speech_ms=100))
    utterances, _ = run(detector, frames(speech) + silence(1000))
    assert utterances[0].reason == "max_length"
    assert utterances[0].clip.duration == pytest.approx(1.0, abs=0.05)


def test_speech_ms_grows_while_speaking(speech):
    detector = VadTurns(1)
    assert detector.speech_ms == 0
    run(detector, frames(speech)[:40])
    assert detector.speaking and detector.speech_ms >= 200


def test_downmix_and_bad_frames():
    left_right = np.array([[1000, 3000], [-2000, 0]], dtype="<i2").tobytes()
    assert np.frombuffer(downmix(left_right), "<i2").tolist() == [2000, -1000]
    assert VadTurns(1).feed(b"\x00" * 100, now=0) is None  # partial frame ignored


def test_settings_are_validated():
    with pytest.raises(ValueError):
        TurnSettings(aggressiveness=5)
    with pytest.raises(ValueError):
        TurnSettings(pause_ms=10)
    assert TurnSettings(pause_ms=0).pause_ms == 0  # no pause updates


def test_speech_pause_end_in_order_with_the_audio_so_far(speech):
    seen, _ = updates(VadTurns(1), silence(400) + frames(speech) + silence(1000))
    kinds = [u.kind for _, u in seen]
    assert kinds == ["speech", "pause", "end"]
    _, (t_pause, pause), (t_end, end) = seen
    # speech fires after start_frames (2) voiced frames; pause at 200 ms of trailing
    # silence, end at 700 ms: the pause comes 500 ms before the end.
    assert t_end - t_pause == pytest.approx(0.5, abs=0.001)
    assert pause.utterance.reason == "pause" and end.utterance.reason == "silence"
    # The pause carries the whole utterance so far: the end adds only silence to it.
    assert pause.utterance.speech_ms == end.utterance.speech_ms
    assert end.utterance.clip.pcm.startswith(pause.utterance.clip.pcm)
    assert end.utterance.clip.duration - pause.utterance.clip.duration == pytest.approx(
        0.5, abs=0.03
    )


def test_speaking_on_after_a_pause_is_resumed_and_one_turn(speech):
    # A 400 ms gap: past pause_ms (200), short of silence_ms (700).
    seen, _ = updates(VadTurns(1), trimmed(speech) + silence(400) + frames(speech) + silence(1000))
    kinds = [u.kind for _, u in seen]
    assert kinds == ["speech", "pause", "resumed", "pause", "end"]
    first_pause, end = seen[1][1].utterance, seen[-1][1].utterance
    assert end.speech_ms > first_pause.speech_ms  # the speculative audio was partial
    assert end.clip.duration > 2 * speech.duration


def test_pause_when_packets_stop_and_pause_off(speech):
    detector = VadTurns(1, TurnSettings(pause_ms=0))
    seen, now = updates(detector, trimmed(speech))
    assert detector.poll(now + 0.4) is None  # no pause updates at all
    assert detector.poll(now + 0.72).kind == "end"
    # A pause_ms at or above silence_ms means no pause either.
    seen, _ = updates(VadTurns(1, TurnSettings(pause_ms=700)), frames(speech) + silence(1000))
    assert [u.kind for _, u in seen] == ["speech", "end"]


def test_webrtc_detector_is_the_provider_for_speaker_turns(speech):
    detector = WebRTCTurnDetector()
    assert isinstance(detector, TurnDetector)
    turns = detector.open(7, guild_id=1, silence_ms=300, pause_ms=100, answer="all")
    assert isinstance(turns, VadTurns)
    assert turns.settings.silence_ms == 300 and turns.settings.pause_ms == 100
    utterances, _ = run(turns, frames(speech) + silence(400))
    assert [u.user_id for u in utterances] == [7]
