"""Per-speaker turn detection: when has someone finished saying something?

Discord delivers 48 kHz stereo s16le in 20 ms frames, per speaker, and sends
nothing while a speaker is silent. So an utterance ends either when the VAD has
heard ``silence_ms`` of non-speech, or when no packet has arrived for that long
(the idle timer, driven by :meth:`TurnDetector.poll`).

Figures measured on this project's setup (see docs/voice.md): keep ~300 ms of
pre-roll or the first phoneme is lost; drop segments under ~250 ms of speech
(noise at stream start); ending at under ~300 ms of trailing silence splits
sentences at natural pauses, so the default waits longer.

Detectors are fed from discord-ext-voice-recv's router thread, so the VAD runs off
the event loop; each detector guards its state with a lock because :meth:`poll`
runs on the loop.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import webrtcvad

from hark.providers import AudioClip

FRAME_MS = 20
RATE = 48_000
MONO_FRAME_BYTES = RATE * FRAME_MS // 1000 * 2  # 1920


@dataclass(frozen=True, slots=True)
class TurnSettings:
    aggressiveness: int = 2  # webrtcvad 0 (least) .. 3 (most aggressive filtering)
    pre_roll_ms: int = 300
    min_speech_ms: int = 250
    silence_ms: int = 700
    max_utterance_ms: int = 15_000
    # Voiced frames in a row that start an utterance (filters clicks).
    start_frames: int = 2
    # Frames quieter than this RMS never count as speech: webrtcvad's hangover marks
    # a few frames after a sound as voiced even when they are digital silence.
    energy_floor: float = 150.0

    def __post_init__(self) -> None:
        if not 0 <= self.aggressiveness <= 3:
            raise ValueError("aggressiveness must be 0..3")
        if self.silence_ms < FRAME_MS:
            raise ValueError(f"silence_ms must be at least {FRAME_MS}")
        if self.pre_roll_ms < 0 or self.min_speech_ms < 0:
            raise ValueError("pre_roll_ms and min_speech_ms must be 0 or more")
        if self.max_utterance_ms < max(self.min_speech_ms, 1000):
            raise ValueError("max_utterance_ms must be at least 1000 and min_speech_ms")


@dataclass(frozen=True, slots=True)
class Utterance:
    user_id: int
    clip: AudioClip  # 48 kHz mono
    speech_ms: int
    started: float  # monotonic seconds
    ended: float
    # "silence", "idle" (no packets) or "max_length"
    reason: str


def downmix(stereo: bytes) -> bytes:
    samples = np.frombuffer(stereo, dtype="<i2").reshape(-1, 2).astype(np.int32)
    return ((samples[:, 0] + samples[:, 1]) // 2).astype("<i2").tobytes()


class TurnDetector:
    def __init__(
        self,
        user_id: int,
        settings: TurnSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.user_id = user_id
        self.settings = settings or TurnSettings()
        self.clock = clock
        self._vad = webrtcvad.Vad(self.settings.aggressiveness)
        self._lock = threading.Lock()
        self._pre_roll: deque[bytes] = deque(maxlen=max(1, self.settings.pre_roll_ms // FRAME_MS))
        self._frames: list[bytes] = []
        self._speaking = False
        self._voiced_run = 0
        self._speech_ms = 0
        self._started = 0.0
        self._last_voice = 0.0
        self._last_packet = 0.0

    @property
    def speaking(self) -> bool:
        return self._speaking

    @property
    def speech_ms(self) -> int:
        """Voiced milliseconds in the utterance under way (0 when idle): for barge-in."""
        return self._speech_ms if self._speaking else 0

    def feed(
        self, pcm: bytes, *, stereo: bool = True, now: float | None = None
    ) -> Utterance | None:
        """Feed one 20 ms frame; returns an utterance when this frame ended one."""
        now = self.clock() if now is None else now
        mono = downmix(pcm) if stereo else pcm
        if len(mono) != MONO_FRAME_BYTES:
            return None  # not a whole 20 ms frame (decoder hiccup): ignore it
        samples = np.frombuffer(mono, dtype="<i2").astype(np.float32)
        loud = float(np.sqrt(np.mean(samples * samples))) >= self.settings.energy_floor
        voiced = loud and self._vad.is_speech(mono, RATE)
        with self._lock:
            self._last_packet = now
            if not self._speaking:
                self._pre_roll.append(mono)
                self._voiced_run = self._voiced_run + 1 if voiced else 0
                if self._voiced_run >= self.settings.start_frames:
                    self._speaking = True
                    self._frames = list(self._pre_roll)
                    self._pre_roll.clear()
                    self._speech_ms = self._voiced_run * FRAME_MS
                    self._started = now - len(self._frames) * FRAME_MS / 1000
                    self._last_voice = now
                return None
            self._frames.append(mono)
            if voiced:
                self._speech_ms += FRAME_MS
                self._last_voice = now
            if (now - self._last_voice) * 1000 >= self.settings.silence_ms:
                return self._finish(now, "silence")
            if len(self._frames) * FRAME_MS >= self.settings.max_utterance_ms:
                return self._finish(now, "max_length")
            return None

    def poll(self, now: float | None = None) -> Utterance | None:
        """The idle timer: end the utterance when packets stopped arriving."""
        now = self.clock() if now is None else now
        with self._lock:
            if self._speaking and (now - self._last_packet) * 1000 >= self.settings.silence_ms:
                return self._finish(now, "idle")
            return None

    def reset(self) -> None:
        with self._lock:
            self._speaking = False
            self._frames = []
            self._pre_roll.clear()
            self._voiced_run = 0
            self._speech_ms = 0

    def _finish(self, now: float, reason: str) -> Utterance | None:
        frames, speech_ms, started = self._frames, self._speech_ms, self._started
        self._speaking = False
        self._frames = []
        self._voiced_run = 0
        self._speech_ms = 0
        if speech_ms < self.settings.min_speech_ms:
            return None  # a click or a cough, not a turn
        clip = AudioClip(b"".join(frames), RATE, 1)
        return Utterance(self.user_id, clip, speech_ms, started, now, reason)
