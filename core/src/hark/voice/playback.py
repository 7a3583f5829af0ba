"""A discord.py audio source fed from a queue, one reply at a time.

discord.py's player thread calls :meth:`SpeechSource.read` every 20 ms. Frames are
added from the event loop as sentences are synthesized; while the next sentence is
still being synthesized the source plays silence instead of ending. Each frame
carries the index of the sentence it belongs to, so after an interruption the
session knows what was actually said.

Barge-in pauses a source (:meth:`SpeechSource.pause`, from any thread): the next
20 ms read is silence and the queue is kept, so :meth:`SpeechSource.resume`
carries on from the frame where it paused. The player keeps running while paused,
so resuming needs no new ``play()`` and no SPEAKING round trip.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import discord

from hark.audio import DISCORD_FRAME_BYTES

SILENCE_FRAME = b"\x00" * DISCORD_FRAME_BYTES


class SpeechSource(discord.AudioSource):
    def __init__(self) -> None:
        self._frames: deque[tuple[bytes, int]] = deque()
        self._lock = threading.Lock()
        self._closed = False
        self._stopped = False
        self._paused = False
        self._partial = b""
        self._partial_segment = -1
        self.started_segments: set[int] = set()
        self.frames_played = 0
        self.first_frame_at: float | None = None
        # Monotonic times of the latest pause / resume (for the session's stage trace).
        self.paused_at: float | None = None
        self.resumed_at: float | None = None

    def add(self, pcm: bytes, segment: int) -> None:
        """Queue 48 kHz stereo s16le PCM belonging to sentence ``segment``."""
        with self._lock:
            if self._stopped:
                return
            if self._partial and self._partial_segment != segment:
                self._frames.append((self._pad(self._partial), self._partial_segment))
                self._partial = b""
            data = self._partial + pcm
            whole = len(data) - len(data) % DISCORD_FRAME_BYTES
            for start in range(0, whole, DISCORD_FRAME_BYTES):
                self._frames.append((data[start : start + DISCORD_FRAME_BYTES], segment))
            self._partial, self._partial_segment = data[whole:], segment

    @staticmethod
    def _pad(data: bytes) -> bytes:
        return data + b"\x00" * (DISCORD_FRAME_BYTES - len(data))

    def close(self) -> None:
        """No more audio will be added: end once the queue has played out."""
        with self._lock:
            if self._partial:
                self._frames.append((self._pad(self._partial), self._partial_segment))
                self._partial = b""
            self._closed = True

    def stop(self) -> None:
        """Stop at once (barge-in): drop everything queued."""
        with self._lock:
            self._stopped = True
            self._frames.clear()

    def pause(self) -> bool:
        """Play silence from the next frame on, keeping what is queued. True if it paused."""
        with self._lock:
            if self._paused or self._stopped:
                return False
            self._paused = True
            self.paused_at = time.monotonic()
            return True

    def resume(self) -> bool:
        """Play on from where :meth:`pause` stopped. True if it was paused."""
        with self._lock:
            if not self._paused:
                return False
            self._paused = False
            self.resumed_at = time.monotonic()
            return True

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def pending_seconds(self) -> float:
        return len(self._frames) * 0.02

    def read(self) -> bytes:
        with self._lock:
            if self._stopped:
                return b""
            if self._paused:
                return SILENCE_FRAME
            if self._frames:
                frame, segment = self._frames.popleft()
                self.started_segments.add(segment)
                self.frames_played += 1
                if self.first_frame_at is None:
                    self.first_frame_at = time.monotonic()
                return frame
            if self._closed:
                return b""
        return SILENCE_FRAME

    def is_opus(self) -> bool:
        return False
