"""The Smart Turn detector: Silero VAD per frame, Smart Turn v3 at each pause.

Per speaker (:class:`SmartSpeakerTurns`), every 20 ms frame of 48 kHz stereo is
downmixed, resampled to 16 kHz (soxr, state kept across frames) and scored by
Silero in 512-sample windows. Speech starts after two speech frames in a row.
After ``pause_ms`` of silence (no speech frames, or no packets at all: Discord
sends nothing while someone is quiet) the turn so far is handed out as a
``pause`` and Smart Turn judges it on the detector's worker thread:

- complete (probability >= ``threshold``): the next ``poll``/``feed`` ends the
  turn, reason ``"complete"``;
- incomplete: the turn stays open until ``max_wait_ms`` of silence (reason
  ``"max_wait"``), unless the speaker goes on (``resumed``), in which case the
  next pause is judged again on the whole turn.

A pause with less than ``min_speech_ms`` of speech is ``dropped`` at once (a
cough, a click, a burst of noise that Silero half-believed).

Smart Turn (~50 ms on one core) never runs on the router thread or the event
loop: feeding and polling stay cheap (one Silero window, ~0.15 ms, at most per
frame), and the verdict is picked up by whichever call comes next.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import importlib.util
import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hark import AudioClip, SpeakerTurns, TurnDetector, TurnUpdate, Utterance
from hark.audio import DISCORD_FRAME_BYTES, DISCORD_RATE
from hark_turn_smart.models import (
    SILERO_FILE,
    SMART_TURN_FILE,
    VAD_RATE,
    VAD_WINDOW,
    Models,
    SileroState,
    missing_files,
)
from hark_turn_smart.settings import FRAME_MS, SmartTurnSettings, TurnConfig, build

if TYPE_CHECKING:
    # numpy and soxr load with the first speaker (or at warm-up), not with the plugin.
    import numpy as np
    import soxr

log = logging.getLogger("hark.provider.turn_smart")

#: Speech frames in a row that start (or resume) an utterance: one is often a click.
START_FRAMES = 2
#: Silero's usual hysteresis: once in speech, a frame stays speech down to this much
#: below ``speech_threshold`` (soft consonants, the tail of a vowel).
HYSTERESIS = 0.15
#: A gap in packets longer than this between two frames of an utterance is filled with
#: silence in its clip (so a pause sounds like one), up to GAP_FILL_MAX_MS.
GAP_FILL_MAX_MS = 2000
#: After this long with no packets and no utterance, Silero's recurrent state is reset:
#: long non-speech drifts it and makes the model slow to hear the next word.
IDLE_RESET_S = 1.0
#: With packets still coming (an open mic, music), the state is reset after this many
#: windows (2 s) once the last QUIET_WINDOWS all scored under QUIET_PROBABILITY and no
#: utterance is under way: pipecat's SileroVADAnalyzer rule, for the same drift.
RESET_WINDOWS = 2 * 16_000 // 512
QUIET_WINDOWS = 5
QUIET_PROBABILITY = 0.1
_FRAME_S = FRAME_MS / 1000
_MONO_FRAME_BYTES = DISCORD_FRAME_BYTES // 2
_JUDGED_FRAMES = 8 * 1000 // FRAME_MS  # Smart Turn hears the last 8 s


def downmix(stereo: bytes) -> np.ndarray:
    """48 kHz stereo s16le -> mono int16 (the average of both channels)."""
    import numpy as np

    samples = np.frombuffer(stereo, dtype="<i2").reshape(-1, 2).astype(np.int32)
    return ((samples[:, 0] + samples[:, 1]) // 2).astype("<i2")


def _vad_resampler() -> soxr.ResampleStream:
    # LQ, not HQ: HQ's longer filter releases output in bursts (0 samples one frame, ~490
    # the next), a frame of extra lag before Silero hears a word end; LQ gives 300 every
    # frame, ~1 ms behind, and a VAD needs no more. Smart Turn gets HQ (one-shot, per pause).
    import soxr

    return soxr.ResampleStream(DISCORD_RATE, VAD_RATE, 1, dtype="float32", quality="LQ")


class SmartTurnDetector(TurnDetector):
    """Turn detection with Silero VAD and Smart Turn v3 (both bundled ONNX models)."""

    # Installed on purpose, so it is the default where the plugin is enabled; a server can
    # go back to the core's webrtcvad detector with ``!plugins use turn ...``.
    default_priority = 10
    # Used outside a bot (tests, benchmarks, `bot prepare`); in the bot the declaration.
    settings_model = SmartTurnSettings

    def __init__(
        self,
        *,
        silero_path: str | Path | None = None,
        smart_turn_path: str | Path | None = None,
        smart_turn_threads: int = 1,
    ) -> None:
        super().__init__()
        self.silero_path = Path(silero_path) if silero_path else SILERO_FILE
        self.smart_turn_path = Path(smart_turn_path) if smart_turn_path else SMART_TURN_FILE
        self.smart_turn_threads = smart_turn_threads
        self._models: Models | None = None
        self._load_lock = threading.Lock()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()
        #: How many times the models were loaded by this detector (stays 1).
        self.loads = 0

    # -- models ----------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._models is not None

    def models(self) -> Models:
        """Both models, loaded on first use and shared by every speaker (blocking)."""
        models = self._models
        if models is not None:
            return models
        with self._load_lock:
            if self._models is None:
                self._models = Models(
                    self.silero_path,
                    self.smart_turn_path,
                    smart_turn_threads=self.smart_turn_threads,
                )
                self.loads += 1
                log.info("loaded Silero VAD and Smart Turn in %.2fs", self._models.load_seconds)
            return self._models

    def _warm_sync(self) -> None:
        self.models().warm()

    async def warm(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._warm_sync)

    async def aclose(self) -> None:
        with self._executor_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        self._models = None

    def unavailable_reason(self) -> str | None:
        if importlib.util.find_spec("onnxruntime") is None:
            return "onnxruntime is not installed"
        missing = missing_files(self.silero_path, self.smart_turn_path)
        if missing:
            return f"the model file `{missing[0].name}` is missing (reinstall hark-turn-smart)"
        return None

    # -- Smart Turn off the caller's thread ------------------------------------------

    def judge(self, mono48k: bytes) -> concurrent.futures.Future[float]:
        """Smart Turn's completeness for a turn (48 kHz mono s16le, its trailing silence
        included), computed on the detector's worker thread. One worker for every
        speaker: inferences queue rather than fight over the cores."""
        with self._executor_lock:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="hark-smart-turn"
                )
            return self._executor.submit(self._judge_sync, mono48k)

    def _judge_sync(self, mono48k: bytes) -> float:
        import numpy as np
        import soxr

        started = time.perf_counter()
        ok = False
        try:
            # Smart Turn only looks at the last 8 s: resample no more than that.
            tail = np.frombuffer(mono48k, dtype="<i2")[-8 * DISCORD_RATE :]
            audio = soxr.resample(tail.astype(np.float32) / 32768.0, DISCORD_RATE, VAD_RATE)
            probability = self.models().completeness(audio)
            ok = True
            return probability
        finally:
            self.stats.record(time.perf_counter() - started, ok=ok)

    # -- speakers --------------------------------------------------------------

    def config(self, guild_id: int | None, voice: dict[str, Any] | None = None) -> TurnConfig:
        """This server's settings now (read again at the start of every utterance),
        as the core resolved them."""
        resolved = self.resolve(guild_id)
        assert resolved is not None
        return build(resolved.values, voice)

    def _open(self, user_id: int, *, guild_id: int | None, **settings: Any) -> SpeakerTurns:
        return SmartSpeakerTurns(self, user_id, guild_id=guild_id, voice=settings)


def _empty() -> np.ndarray:
    import numpy as np

    return np.zeros(0, dtype=np.float32)


class SmartSpeakerTurns:
    """One speaker's turns (see the module docstring). Thread-safe: ``feed`` runs on the
    router thread, ``poll`` and ``reset`` on the event loop."""

    def __init__(
        self,
        detector: SmartTurnDetector,
        user_id: int,
        *,
        guild_id: int | None = None,
        voice: dict[str, Any] | None = None,
    ) -> None:
        self.user_id = user_id
        self.guild_id = guild_id
        self._detector = detector
        self._voice = dict(voice or {})
        self._lock = threading.Lock()
        self.config = detector.config(guild_id, self._voice)
        # Silero, per speaker: the resampler's filter state and the model's recurrent one.
        self._resampler = _vad_resampler()
        self._vad_buffer = _empty()
        self._vad_state = SileroState()
        self._probability = 0.0  # Silero's latest window
        self._in_speech = False  # Silero's hysteresis
        self._windows = 0  # scored since Silero's state was last reset
        self._quiet_windows = 0  # in a row, under QUIET_PROBABILITY
        # The pre-roll keeps the frames before speech was confirmed, or the first phoneme
        # is lost; sized once (the voice session's pre_roll_ms).
        self._pre_roll: deque[bytes] = deque(
            maxlen=self.config.pre_roll_ms // FRAME_MS + START_FRAMES
        )
        self._last_packet: float | None = None
        self._clear()

    def _clear(self) -> None:
        self._speaking = False
        self._frames: list[bytes] = []
        self._voiced_run = 0
        self._speech_ms = 0
        self._probability_sum = 0.0
        self._started = 0.0
        self._last_voice = 0.0
        self._voice_end = 0  # frames in the clip up to the last speech frame
        self._paused: Utterance | None = None
        self._pending: concurrent.futures.Future[float] | None = None
        self._verdict: float | None = None

    # -- the protocol ----------------------------------------------------------------

    @property
    def speaking(self) -> bool:
        return self._speaking

    @property
    def speech_ms(self) -> int:
        return self._speech_ms if self._speaking else 0

    def feed(self, pcm: bytes, *, now: float | None = None) -> TurnUpdate | None:
        now = time.monotonic() if now is None else now
        if len(pcm) != DISCORD_FRAME_BYTES:
            return None  # not a whole 20 ms frame (a decoder hiccup): ignore it
        mono = downmix(pcm)
        with self._lock:
            gap = None if self._last_packet is None else now - self._last_packet
            self._last_packet = now
            if gap is not None and gap >= IDLE_RESET_S and not self._speaking:
                self._reset_vad()
            probability = self._score(mono)
            voiced = self._voiced(probability)
            if self._speaking and gap is not None and gap > 1.5 * _FRAME_S:
                # Packets stopped and came back: put the silence back into the clip.
                missing = min(round(gap / _FRAME_S) - 1, GAP_FILL_MAX_MS // FRAME_MS)
                self._frames.extend([bytes(_MONO_FRAME_BYTES)] * missing)
            return self._step(mono.tobytes(), voiced, probability, now)

    def poll(self, now: float | None = None) -> TurnUpdate | None:
        now = time.monotonic() if now is None else now
        with self._lock:
            return self._timers(now)

    def reset(self) -> None:
        with self._lock:
            if self._pending is not None:
                self._pending.cancel()
            self._clear()
            self._pre_roll.clear()

    def _reset_vad(self) -> None:
        # What is left of the audio before a long gap belongs to another moment.
        self._resampler = _vad_resampler()
        self._vad_buffer = _empty()
        self._vad_state.reset()
        self._probability = 0.0
        self._in_speech = False
        self._windows = self._quiet_windows = 0

    # -- for tests and benchmarks ------------------------------------------------

    def wait_verdict(self, timeout: float | None = 10.0) -> float | None:
        """Block until Smart Turn has judged the current pause (if it is being judged);
        returns its probability, or None. The next ``poll``/``feed`` acts on it."""
        pending = self._pending
        if pending is None:
            return self._verdict
        done, _ = concurrent.futures.wait([pending], timeout=timeout)
        if not done or pending.cancelled() or pending.exception() is not None:
            return None
        return pending.result()

    @property
    def judging(self) -> bool:
        """A pause is waiting for Smart Turn's verdict."""
        return self._pending is not None

    # -- internals -----------------------------------------------------------------

    def _score(self, mono: np.ndarray) -> float:
        """Silero on the 16 kHz windows this frame completes (0 or 1 of them, sometimes 2)."""
        import numpy as np

        chunk = self._resampler.resample_chunk(mono.astype(np.float32) / 32768.0)
        buffer = np.concatenate([self._vad_buffer, chunk]) if self._vad_buffer.size else chunk
        models = self._detector.models()
        while buffer.size >= VAD_WINDOW:
            self._probability = models.speech_probability(
                np.ascontiguousarray(buffer[:VAD_WINDOW]), self._vad_state
            )
            buffer = buffer[VAD_WINDOW:]
            self._windows += 1
            quiet = self._probability < QUIET_PROBABILITY
            self._quiet_windows = self._quiet_windows + 1 if quiet else 0
            if (
                self._windows >= RESET_WINDOWS
                and self._quiet_windows >= QUIET_WINDOWS
                and not self._speaking
            ):
                self._vad_state.reset()
                self._windows = 0
        self._vad_buffer = buffer
        return self._probability

    def _voiced(self, probability: float) -> bool:
        threshold = self.config.speech_threshold
        floor = threshold - HYSTERESIS if self._in_speech else threshold
        self._in_speech = probability >= floor
        return self._in_speech

    def _step(self, mono: bytes, voiced: bool, probability: float, now: float) -> TurnUpdate | None:
        self._voiced_run = self._voiced_run + 1 if voiced else 0
        if not self._speaking:
            self._pre_roll.append(mono)
            if self._voiced_run < START_FRAMES:
                return None
            # Settings are read per utterance, so `!config turn_smart` applies to the next one.
            self.config = self._detector.config(self.guild_id, self._voice)
            self._speaking = True
            self._frames = list(self._pre_roll)
            self._pre_roll.clear()
            self._speech_ms = self._voiced_run * FRAME_MS
            self._probability_sum = probability * self._voiced_run
            self._started = now - len(self._frames) * _FRAME_S
            self._last_voice = now
            self._voice_end = len(self._frames)
            return TurnUpdate("speech")
        self._frames.append(mono)
        if voiced and self._paused is None:
            self._speech_ms += FRAME_MS
            self._probability_sum += probability
            self._last_voice = now
            self._voice_end = len(self._frames)
        elif voiced and self._voiced_run >= START_FRAMES:
            # Speech again after a pause: whatever was judged (or is being) is stale.
            if self._pending is not None:
                self._pending.cancel()
            self._paused, self._pending, self._verdict = None, None, None
            self._speech_ms += self._voiced_run * FRAME_MS
            self._probability_sum += probability * self._voiced_run
            self._last_voice = now
            self._voice_end = len(self._frames)
            return TurnUpdate("resumed")
        return self._timers(now)

    def _timers(self, now: float) -> TurnUpdate | None:
        if not self._speaking:
            return None
        config = self.config
        silence_ms = (now - self._last_voice) * 1000
        if self._paused is None:
            if (now - self._started) * 1000 >= config.max_utterance_ms:
                return self._end(now, "max_length")
            if silence_ms < config.pause_ms - 0.5:  # 0.5: float noise in timestamps
                return None
            if self._speech_ms < config.min_speech_ms:
                return self._drop(now)
            return self._pause(now)
        self._collect()
        if self._verdict is not None and self._verdict >= config.threshold:
            return self._end(now, "complete")
        if silence_ms >= config.max_wait_ms - 0.5:
            return self._end(now, "max_wait")
        return None

    def _collect(self) -> None:
        pending = self._pending
        if pending is None or not pending.done():
            return
        self._pending = None
        try:
            self._verdict = pending.result()
        except Exception:
            # A failed inference is "don't know": the turn waits for max_wait_ms, as an
            # incomplete one would. Logged with its traceback; the next pause tries again.
            log.exception("Smart Turn failed for user %s", self.user_id)
            self._verdict = None

    def _pause(self, now: float) -> TurnUpdate:
        clip_frames = self._frames
        self._paused = self._utterance(now, "pause", b"".join(clip_frames))
        # Smart Turn hears the turn up to the last speech plus exactly pause_ms of silence,
        # whether the silence came as frames or as no packets at all (then it is zeros).
        pause_frames = self.config.pause_frames
        tail = clip_frames[self._voice_end : self._voice_end + pause_frames]
        first = max(0, self._voice_end + pause_frames - _JUDGED_FRAMES)
        head = clip_frames[first : self._voice_end]
        missing = bytes((pause_frames - len(tail)) * _MONO_FRAME_BYTES)
        judged = b"".join(head + tail) + missing
        self._verdict = None
        self._pending = self._detector.judge(judged)
        return TurnUpdate("pause", self._paused)

    def _drop(self, now: float) -> TurnUpdate:
        utterance = self._utterance(now, "too_short", self._clip())
        log.debug("user %s: dropped %d ms of speech", self.user_id, utterance.speech_ms)
        self._clear()
        return TurnUpdate("dropped", utterance)

    def _end(self, now: float, reason: str) -> TurnUpdate:
        if self._paused is not None:
            # Nothing was heard since the pause: the same audio, so a speculative
            # transcription of the pause is the transcription of the turn.
            utterance = dataclasses.replace(self._paused, ended=now, reason=reason)
        else:
            utterance = self._utterance(now, reason, self._clip())
        log.debug(
            "user %s: turn ended (%s) after %d ms of speech, Smart Turn %s",
            self.user_id,
            reason,
            utterance.speech_ms,
            "n/a" if self._verdict is None else f"{self._verdict:.2f}",
        )
        self._clear()
        return TurnUpdate("end", utterance)

    def _clip(self) -> bytes:
        return b"".join(self._frames)

    def _utterance(self, now: float, reason: str, pcm: bytes) -> Utterance:
        voiced_frames = max(1, self._speech_ms // FRAME_MS)
        return Utterance(
            self.user_id,
            AudioClip(pcm, DISCORD_RATE, 1),
            self._speech_ms,
            self._started,
            now,
            reason,
            speech_probability=round(self._probability_sum / voiced_frames, 4),
        )
