"""Whisper log-mel features for Smart Turn v3 (numpy only).

Smart Turn v3 is Whisper Tiny's encoder with a classifier head, exported to ONNX
without its feature extractor. Its input is what
``transformers.WhisperFeatureExtractor(chunk_length=8)`` makes of 8 s of 16 kHz
audio with ``do_normalize=True``: shape (80, 800). That is written out here
rather than imported, because ``transformers`` (and torch) would dwarf the rest
of the plugin. The steps follow Whisper's published front end:

1. the waveform is normalised to zero mean and unit variance (the padding too);
2. a centred STFT: reflect padding, periodic Hann window of 400, hop 160;
3. power spectrum onto 80 Slaney-scale, Slaney-normalised mel filters, 0-8 kHz;
4. ``log10`` (floored at 1e-10), the last frame dropped (801 -> 800 frames),
   clamped to 8 below the maximum, then ``(x + 4) / 4``.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

SAMPLE_RATE = 16_000
SECONDS = 8
SAMPLES = SAMPLE_RATE * SECONDS  # 128,000: the model's fixed input length
N_FFT = 400
HOP = 160
N_MELS = 80
FRAMES = SAMPLES // HOP  # 800


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    # Slaney's scale: linear below 1 kHz, logarithmic above (librosa's htk=False).
    hz = np.asarray(hz, dtype=np.float64)
    linear = 3.0 * hz / 200.0
    log = 15.0 + np.log(np.maximum(hz, 1e-9) / 1000.0) * (27.0 / np.log(6.4))
    return np.where(hz >= 1000.0, log, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    linear = 200.0 * mel / 3.0
    log = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, log, linear)


def mel_filters() -> np.ndarray:
    """The (80, 201) filter bank: triangles on the mel scale, each of unit area."""
    fft_hz = np.linspace(0.0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE / 2), N_MELS + 2))
    width = np.diff(edges)
    ramps = edges[:, None] - fft_hz[None, :]
    rising = -ramps[:-2] / width[:-1, None]
    falling = ramps[2:] / width[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]


_FILTERS = mel_filters()
# Periodic Hann (torch.hann_window's default, which Whisper uses), not numpy's symmetric one.
_WINDOW = np.hanning(N_FFT + 1)[:-1]


def fit(audio: np.ndarray) -> np.ndarray:
    """The model's 8 s input: the last 8 s of ``audio``, or ``audio`` with zeros *in
    front* (Smart Turn is trained with the speech at the end of the window)."""
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    if audio.size >= SAMPLES:
        return audio[-SAMPLES:]
    return np.concatenate([np.zeros(SAMPLES - audio.size, dtype=np.float32), audio])


def log_mel(audio: np.ndarray) -> np.ndarray:
    """Features of exactly 8 s of 16 kHz float audio (see :func:`fit`): (80, 800) float32."""
    x = np.asarray(audio, dtype=np.float32)
    if x.shape != (SAMPLES,):
        raise ValueError(f"expected {SAMPLES} samples of 16 kHz audio, got shape {x.shape}")
    # In float32, like the reference, before the spectrum promotes to float64.
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    padded = np.pad(x.astype(np.float64), N_FFT // 2, mode="reflect")
    frames = sliding_window_view(padded, N_FFT)[::HOP]  # (801, 400), no copy
    power = np.abs(np.fft.rfft(frames * _WINDOW, axis=-1)) ** 2  # (801, 201)
    mel = np.log10(np.maximum(_FILTERS @ power.T, 1e-10))[:, :-1]  # (80, 800)
    mel = np.maximum(mel, mel.max() - 8.0)
    return ((mel + 4.0) / 4.0).astype(np.float32)
