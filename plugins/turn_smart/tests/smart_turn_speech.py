"""Driving a speaker's turn detection the way Discord and the voice session do, with
real speech from espeak-ng: 20 ms frames with explicit timestamps, polls every 50 ms,
no packets while the speaker is quiet."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field

import numpy as np
import pytest

from hark import AudioClip, SpeakerTurns, Utterance
from hark.audio import DISCORD_FRAME_BYTES, convert, read_wav

POLL_S = 0.05  # how often the voice session polls
FRAME_S = 0.02
# Discord clients send five frames of silence when someone stops talking, then nothing.
TRAILING_SILENCE_FRAMES = 5


def espeak(text: str, *, rate: int = 150) -> AudioClip:
    """``text`` spoken by espeak-ng as 48 kHz stereo, cut to the speech (no leading or
    trailing silence) on 20 ms frame boundaries, so the last frame is the speech's end."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed (scripts/test installs it)")
    wav = subprocess.run(
        ["espeak-ng", "-v", "en-us", "-s", str(rate), "--stdout", text],
        check=True,
        capture_output=True,
    ).stdout
    clip = convert(read_wav(wav), 48_000, 2)
    samples = np.frombuffer(clip.pcm, dtype="<i2").reshape(-1, 2)
    loud = np.flatnonzero(np.abs(samples[:, 0].astype(np.int32)) > 100)
    frame = DISCORD_FRAME_BYTES // 4
    first = loud[0] // frame * frame
    last = -(-(loud[-1] + 1) // frame) * frame
    return AudioClip(samples[first:last].tobytes(), 48_000, 2)


def noise(kind: str, seconds: float, *, rms: float = 3000.0, seed: int = 7) -> AudioClip:
    """White noise, or a low rumble (brown noise: most of its energy below ~100 Hz), at
    speech loudness."""
    rng = np.random.default_rng(seed)
    n = round(48_000 * seconds)
    if kind == "white":
        signal = rng.standard_normal(n)
    else:
        signal = np.cumsum(rng.standard_normal(n))
        signal -= np.convolve(signal, np.ones(4801) / 4801, mode="same")  # no DC drift
    signal *= rms / np.sqrt(np.mean(signal**2))
    mono = np.clip(signal, -32768, 32767).astype("<i2")
    return AudioClip(np.repeat(mono[:, None], 2, axis=1).tobytes(), 48_000, 2)


@dataclass
class Event:
    at: float
    kind: str
    utterance: Utterance | None


@dataclass
class Speaker:
    """Feeds a :class:`SpeakerTurns` like voice-recv (frames) and the session (polls)."""

    turns: SpeakerTurns
    now: float = 1000.0
    events: list[Event] = field(default_factory=list)
    speech_ended: float | None = None  # when the last speech frame was fed
    _next_poll: float = 1000.0

    def _record(self, update) -> None:
        if update is None:
            return
        self.events.append(Event(self.now, update.kind, update.utterance))
        if update.kind == "pause":
            # Smart Turn runs on the detector's worker thread. Simulated time stands still
            # while it does: as if it took less than one poll (bench_turn_smart.py says how
            # long it really takes); the next feed or poll acts on its verdict.
            self.turns.wait_verdict()

    def _frame(self, pcm: bytes) -> None:
        self.now = round(self.now + FRAME_S, 6)
        self._record(self.turns.feed(pcm, now=self.now))
        while self._next_poll <= self.now:
            self._next_poll = round(self._next_poll + POLL_S, 6)
            self._record(self.turns.poll(now=self.now))

    def speak(self, clip: AudioClip, *, trailing_silence: bool = True) -> None:
        """Every frame of ``clip``; then Discord's five silence frames."""
        for i in range(0, len(clip.pcm) - DISCORD_FRAME_BYTES + 1, DISCORD_FRAME_BYTES):
            self._frame(clip.pcm[i : i + DISCORD_FRAME_BYTES])
        self.speech_ended = self.now
        if trailing_silence:
            self.silence_frames(TRAILING_SILENCE_FRAMES)

    def silence_frames(self, count: int) -> None:
        for _ in range(count):
            self._frame(bytes(DISCORD_FRAME_BYTES))

    def quiet(self, seconds: float) -> None:
        """No packets for ``seconds``: only the session's polls."""
        until = self.now + seconds
        while self._next_poll <= until + 1e-9:
            self.now = self._next_poll
            self._next_poll = round(self._next_poll + POLL_S, 6)
            self._record(self.turns.poll(now=self.now))
        self.now = round(until, 6)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def first(self, kind: str) -> Event:
        return next(e for e in self.events if e.kind == kind)
