"""SpeechSource pauses (barge-in step 1) and resumes where it paused."""

from __future__ import annotations

from hark.audio import DISCORD_FRAME_BYTES
from hark.voice.playback import SILENCE_FRAME, SpeechSource


def frame(value: int) -> bytes:
    return bytes([value]) * DISCORD_FRAME_BYTES


def test_pause_plays_silence_and_resume_goes_on_from_the_same_frame():
    source = SpeechSource()
    source.add(frame(1) + frame(2) + frame(3), 0)
    source.close()
    assert source.read() == frame(1)
    assert source.pause() and not source.pause()  # once
    assert source.paused and source.paused_at is not None
    # Paused: silence, however long, and nothing queued is lost or played.
    assert [source.read() for _ in range(5)] == [SILENCE_FRAME] * 5
    assert source.frames_played == 1
    assert source.resume() and not source.resume()
    assert source.resumed_at >= source.paused_at
    assert [source.read(), source.read(), source.read()] == [frame(2), frame(3), b""]


def test_a_stopped_source_ends_even_while_paused():
    source = SpeechSource()
    source.add(frame(1) * 4, 0)
    source.pause()
    source.stop()
    assert source.read() == b""
    assert not source.pause()  # nothing left to pause
