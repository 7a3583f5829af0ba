"""The core's turn detector: webrtcvad and a silence threshold, per speaker.

Discord delivers 48 kHz stereo s16le in 20 ms frames, per speaker, and sends
nothing while a speaker is silent. :class:`VadTurns` (one per speaker, a
:class:`~hark.providers.turns.SpeakerTurns`) classifies each frame with webrtcvad
and measures trailing silence from the last voiced frame, whether silent frames
keep arriving (:meth:`VadTurns.feed`) or packets stopped (:meth:`VadTurns.poll`,
driven by the session's timer). It reports:

- ``speech`` once ``start_frames`` voiced frames in a row started an utterance;
- ``pause`` when trailing silence reaches ``pause_ms`` (short, ~200 ms), with the
  audio so far, so the session can transcribe while it waits for the end;
- ``resumed`` when voice comes back after a ``pause``;
- ``end`` when trailing silence reaches ``silence_ms`` (``reason`` "silence", or
  "idle" when it was the timer), or the utterance reached ``max_utterance_ms``;
- ``dropped`` instead of ``end`` when it held under ``min_speech_ms`` of speech.

Figures measured on this project's setup (see docs/voice.md): keep ~300 ms of
pre-roll or the first phoneme is lost; drop segments under ~250 ms of speech
(noise at stream start); ending at under ~300 ms of trailing silence splits
sentences at natural pauses, so the default waits longer, and speculative
transcription at ``pause_ms`` hides most of that wait.

:class:`WebRTCTurnDetector` is the provider the built-in ``voice`` plugin
registers: the default, ranked below any plugin's detector.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import webrtcvad

from hark.providers import AudioClip
from hark.providers.turns import TurnDetector, TurnUpdate, Utterance

__all__ = [
    "FRAME_MS",
    "TurnSettings",
    "TurnUpdate",
    "Utterance",
    "VadTurns",
    "WebRTCTurnDetector",
    "downmix",
]

FRAME_MS = 20
RATE = 48_000
MONO_FRAME_BYTES = RATE * FRAME_MS // 1000 * 2  # 1920


@dataclass(frozen=True, slots=True)
class TurnSettings:
    aggressiveness: int = 2  # webrtcvad 0 (least) .. 3 (most aggressive filtering)
    pre_roll_ms: int = 300
    min_speech_ms: int = 250
    # Trailing silence that makes a "pause" (speculative transcription starts);
    # 0, or anything from silence_ms up, means no pause updates.
    pause_ms: int = 200
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
        if self.pause_ms != 0 and self.pause_ms < FRAME_MS:
            raise ValueError(f"pause_ms must be 0 (off) or at least {FRAME_MS}")
        if self.pre_roll_ms < 0 or self.min_speech_ms < 0:
            raise ValueError("pre_roll_ms and min_speech_ms must be 0 or more")
        if self.max_utterance_ms < max(self.min_speech_ms, 1000):
            raise ValueError("max_utterance_ms must be at least 1000 and min_speech_ms")

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> TurnSettings:
        """The fields found in ``settings`` (a server's voice settings), defaults for the rest."""
        values: dict[str, Any] = {}
        for key in (f.name for f in fields(cls)):
            if settings.get(key) is not None:
                values[key] = float(settings[key]) if key == "energy_floor" else int(settings[key])
        return cls(**values)


def downmix(stereo: bytes) -> bytes:
    import numpy as np  # here, not at import: `bot plugins` lists this detector

    samples = np.frombuffer(stereo, dtype="<i2").reshape(-1, 2).astype(np.int32)
    return ((samples[:, 0] + samples[:, 1]) // 2).astype("<i2").tobytes()


class VadTurns:
    """One speaker's turns, decided by webrtcvad (a :class:`~hark.SpeakerTurns`)."""

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
        # feed() runs on voice-recv's router thread, poll() on the event loop.
        self._lock = threading.Lock()
        self._pre_roll: deque[bytes] = deque(maxlen=max(1, self.settings.pre_roll_ms // FRAME_MS))
        self._frames: list[bytes] = []
        self._speaking = False
        self._paused = False
        self._voiced_run = 0
        self._speech_ms = 0
        self._started = 0.0
        self._last_voice = 0.0

    @property
    def speaking(self) -> bool:
        return self._speaking

    @property
    def speech_ms(self) -> int:
        """Voiced milliseconds in the utterance under way (0 when idle): for barge-in."""
        return self._speech_ms if self._speaking else 0

    def feed(
        self, pcm: bytes, *, stereo: bool = True, now: float | None = None
    ) -> TurnUpdate | None:
        """Feed one 20 ms frame (router thread); returns what it changed, if anything."""
        now = self.clock() if now is None else now
        mono = downmix(pcm) if stereo else pcm
        if len(mono) != MONO_FRAME_BYTES:
            return None  # not a whole 20 ms frame (decoder hiccup): ignore it
        import numpy as np  # loaded once; a per-frame lookup after that

        samples = np.frombuffer(mono, dtype="<i2").astype(np.float32)
        loud = float(np.sqrt(np.mean(samples * samples))) >= self.settings.energy_floor
        voiced = loud and self._vad.is_speech(mono, RATE)
        with self._lock:
            if not self._speaking:
                self._pre_roll.append(mono)
                self._voiced_run = self._voiced_run + 1 if voiced else 0
                if self._voiced_run < self.settings.start_frames:
                    return None
                self._speaking = True
                self._paused = False
                self._frames = list(self._pre_roll)
                self._pre_roll.clear()
                self._speech_ms = self._voiced_run * FRAME_MS
                self._started = now - len(self._frames) * FRAME_MS / 1000
                self._last_voice = now
                return TurnUpdate("speech")
            self._frames.append(mono)
            update: TurnUpdate | None = None
            if voiced:
                self._speech_ms += FRAME_MS
                self._last_voice = now
                if self._paused:
                    self._paused = False
                    update = TurnUpdate("resumed")
            if len(self._frames) * FRAME_MS >= self.settings.max_utterance_ms:
                return self._finish(now, "max_length")
            return self._silence(now, "silence") or update

    def poll(self, now: float | None = None) -> TurnUpdate | None:
        """The timer (event loop): trailing silence goes on while no packets arrive."""
        now = self.clock() if now is None else now
        with self._lock:
            return self._silence(now, "idle") if self._speaking else None

    def reset(self) -> None:
        with self._lock:
            self._speaking = False
            self._paused = False
            self._frames = []
            self._pre_roll.clear()
            self._voiced_run = 0
            self._speech_ms = 0

    # -- with the lock held ------------------------------------------------------

    def _silence(self, now: float, reason: str) -> TurnUpdate | None:
        """``pause`` or ``end`` once trailing silence is long enough."""
        quiet_ms = (now - self._last_voice) * 1000
        if quiet_ms >= self.settings.silence_ms:
            return self._finish(now, reason)
        pause_ms = self.settings.pause_ms
        if pause_ms and not self._paused and quiet_ms >= pause_ms:
            self._paused = True
            return TurnUpdate("pause", self._utterance(now, "pause"))
        return None

    def _utterance(self, now: float, reason: str) -> Utterance:
        clip = AudioClip(b"".join(self._frames), RATE, 1)
        return Utterance(self.user_id, clip, self._speech_ms, self._started, now, reason)

    def _finish(self, now: float, reason: str) -> TurnUpdate:
        utterance = self._utterance(now, reason)
        self._speaking = False
        self._paused = False
        self._frames = []
        self._voiced_run = 0
        self._speech_ms = 0
        if utterance.speech_ms < self.settings.min_speech_ms:
            return TurnUpdate("dropped", utterance)  # a click or a cough, not a turn
        return TurnUpdate("end", utterance)


class WebRTCTurnDetector(TurnDetector):
    """The core's default: webrtcvad plus a silence threshold (``silence_ms``)."""

    # Lowest rank: a plugin's detector (e.g. turn_smart) wins wherever it is enabled,
    # unless a server picks this one with `!plugins use turn voice`.
    default_priority = -100

    def _open(self, user_id: int, *, guild_id: int | None, **settings: Any) -> VadTurns:
        return VadTurns(user_id, TurnSettings.from_settings(settings))
