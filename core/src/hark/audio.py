"""PCM helpers: format conversion (soxr), WAV in memory, Discord's frame format.

Everything is signed 16-bit little-endian PCM, interleaved when stereo. Discord
plays and sends 48 kHz stereo in 20 ms frames (3,840 bytes).

numpy and soxr are imported by the functions that use them, not by this module:
the constants and :func:`read_wav` are needed by plugins that never touch a sample
(and by ``bot plugins``), and numpy alone is ~10 MB of RSS.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Iterable
from typing import TYPE_CHECKING

from hark.providers.types import AudioClip

if TYPE_CHECKING:
    import numpy as np

DISCORD_RATE = 48_000
DISCORD_CHANNELS = 2
FRAME_MS = 20
DISCORD_FRAME_BYTES = DISCORD_RATE * FRAME_MS // 1000 * DISCORD_CHANNELS * 2  # 3840


def to_array(pcm: bytes, channels: int) -> np.ndarray:
    """PCM bytes -> int16 array shaped (frames, channels)."""
    import numpy as np

    return np.frombuffer(pcm, dtype="<i2").reshape(-1, channels)


def remix(samples: np.ndarray, channels: int) -> np.ndarray:
    """Change the channel count: mono is duplicated, more channels are averaged."""
    import numpy as np

    have = samples.shape[1]
    if have == channels:
        return samples
    if channels == 1:
        return samples.mean(axis=1, dtype=np.float32).round().astype("<i2").reshape(-1, 1)
    mono = samples if have == 1 else remix(samples, 1)
    return np.repeat(mono, channels, axis=1)


def convert(clip: AudioClip, sample_rate: int, channels: int) -> AudioClip:
    """One-shot conversion of a whole clip (use :class:`StreamResampler` for streams)."""
    if clip.sample_rate == sample_rate and clip.channels == channels:
        return clip
    import numpy as np
    import soxr

    samples = remix(to_array(clip.pcm, clip.channels), channels)
    if clip.sample_rate != sample_rate and len(samples):
        samples = soxr.resample(samples, clip.sample_rate, sample_rate, quality="HQ")
    return AudioClip(np.ascontiguousarray(samples, dtype="<i2").tobytes(), sample_rate, channels)


class StreamResampler:
    """Converts a stream of clips chunk by chunk, keeping filter state between chunks,
    so chunk boundaries make no clicks. Call :meth:`flush` at the end of the stream."""

    def __init__(
        self,
        in_rate: int,
        in_channels: int,
        out_rate: int = DISCORD_RATE,
        out_channels: int = DISCORD_CHANNELS,
    ) -> None:
        self.in_rate, self.in_channels = in_rate, in_channels
        self.out_rate, self.out_channels = out_rate, out_channels
        self._leftover = b""
        self._stream = None
        if in_rate != out_rate:
            import soxr

            self._stream = soxr.ResampleStream(
                in_rate, out_rate, in_channels, dtype="int16", quality="HQ"
            )

    def _out(self, samples: np.ndarray) -> AudioClip:
        import numpy as np

        return AudioClip(
            np.ascontiguousarray(samples, dtype="<i2").tobytes(), self.out_rate, self.out_channels
        )

    def feed(self, pcm: bytes) -> AudioClip:
        """Convert the next bytes of the stream. Any length is fine: a partial frame
        (an HTTP chunk ending mid-sample) is kept for the next call."""
        data = self._leftover + pcm
        frame = 2 * self.in_channels
        whole = len(data) - len(data) % frame
        self._leftover = data[whole:]
        samples = to_array(data[:whole], self.in_channels)
        if self._stream is not None:
            samples = self._stream.resample_chunk(samples, last=False)
        # Remix after resampling: resampling two identical channels is twice the work.
        return self._out(remix(samples, self.out_channels))

    def flush(self) -> AudioClip:
        """End of stream: the resampler's tail. A dangling partial frame is dropped."""
        import numpy as np

        self._leftover = b""
        if self._stream is None:
            return self._out(np.zeros((0, self.out_channels), dtype="<i2"))
        empty = np.zeros((0, self.in_channels), dtype="<i2")
        return self._out(remix(self._stream.resample_chunk(empty, last=True), self.out_channels))


def wav_bytes(clips: Iterable[AudioClip]) -> bytes:
    """Concatenate clips (converted to the first clip's format) into a WAV file in memory."""
    clips = list(clips)
    if not clips:
        raise ValueError("no audio")
    rate, channels = clips[0].sample_rate, clips[0].channels
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(AudioClip.SAMPLE_WIDTH)
        out.setframerate(rate)
        for clip in clips:
            out.writeframes(convert(clip, rate, channels).pcm)
    return buffer.getvalue()


def read_wav(data: bytes) -> AudioClip:
    """A 16-bit PCM WAV file -> AudioClip."""
    with wave.open(io.BytesIO(data), "rb") as wav:
        if wav.getsampwidth() != AudioClip.SAMPLE_WIDTH:
            raise ValueError(f"expected 16-bit PCM, got {8 * wav.getsampwidth()}-bit")
        return AudioClip(wav.readframes(wav.getnframes()), wav.getframerate(), wav.getnchannels())


def rms(clip: AudioClip) -> float:
    """Root-mean-square level (0..32767), e.g. to tell speech from silence in tests."""
    import numpy as np

    samples = to_array(clip.pcm, clip.channels).astype(np.float64)
    return float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0
