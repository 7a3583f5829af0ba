"""Benchmark: what Smart Turn costs per frame and per pause, against webrtcvad, in one run.

    python plugins/turn_smart/bench_turn_smart.py [--seconds 20] [--pauses 30]

Prints, for ``--seconds`` of real speech (espeak-ng, 48 kHz stereo like Discord's):

- per 20 ms frame, the baseline: downmix + ``webrtcvad.Vad(2).is_speech`` (what the
  core's default detector does per frame; webrtcvad is imported directly so the
  figure doesn't move with the core's code);
- per frame, the plugin: ``SmartSpeakerTurns.feed`` (downmix, streaming 48 -> 16 kHz
  resampling, Silero on each completed 512-sample window, the state machine), and
  Silero's inference alone per window;
- per pause, Smart Turn: 8 s of audio resampled, Whisper features, ONNX inference,
  at 1 thread (the plugin's default) and at every core;
- model load time, and a frame's share of its 20 ms budget.

Figures are medians (and p99 where a tail matters); the ratio to webrtcvad is what
travels between machines.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import subprocess
import time

import numpy as np
import soxr
import webrtcvad
from hark_turn_smart import SmartTurnDetector
from hark_turn_smart import features as feat
from hark_turn_smart.models import Models, SileroState

from hark.audio import DISCORD_FRAME_BYTES, convert, read_wav

TEXT = (
    "Please turn on the kitchen lights. I want to go to the cinema tonight, "
    "but first remind me to call my mother tomorrow morning. "
)


def speech(seconds: float) -> bytes:
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is not installed")
    wav = subprocess.run(
        ["espeak-ng", "-v", "en-us", "-s", "150", "--stdout", TEXT * 8],
        check=True,
        capture_output=True,
    ).stdout
    pcm = convert(read_wav(wav), 48_000, 2).pcm
    n = int(seconds * 50) * DISCORD_FRAME_BYTES
    while len(pcm) < n:
        pcm += pcm
    return pcm[:n]


def frames(pcm: bytes) -> list[bytes]:
    return [pcm[i : i + DISCORD_FRAME_BYTES] for i in range(0, len(pcm), DISCORD_FRAME_BYTES)]


def micros(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = statistics.median(ordered) * 1e6
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))] * 1e6
    return f"median {p50:7.1f} µs   p99 {p99:7.1f} µs"


def bench_webrtcvad(chunks: list[bytes]) -> list[float]:
    vad = webrtcvad.Vad(2)
    times = []
    for frame in chunks:
        started = time.perf_counter()
        stereo = np.frombuffer(frame, dtype="<i2").reshape(-1, 2).astype(np.int32)
        mono = ((stereo[:, 0] + stereo[:, 1]) // 2).astype("<i2").tobytes()
        vad.is_speech(mono, 48_000)
        times.append(time.perf_counter() - started)
    return times


def bench_feed(detector: SmartTurnDetector, chunks: list[bytes], *, pauses: bool) -> list[float]:
    """feed() per frame. Without pauses, the config is pinned so that no pause (and so no
    Smart Turn run on the worker thread, competing for the cores) happens while timing;
    with them, the default settings, as in a voice channel."""
    config = detector.config(None)
    if not pauses:
        config = dataclasses.replace(
            config, pause_ms=10**9, max_wait_ms=10**9, max_utterance_ms=10**9
        )
    real = detector.config
    detector.config = lambda guild_id, voice=None: config  # type: ignore[method-assign]
    try:
        turns = detector.open(1, guild_id=None)
        times = []
        now = 0.0
        for frame in chunks:
            now += 0.02
            started = time.perf_counter()
            turns.feed(frame, now=now)
            times.append(time.perf_counter() - started)
            if turns.judging:
                turns.wait_verdict()  # one Smart Turn at a time, like a real speaker
        return times
    finally:
        detector.config = real  # type: ignore[method-assign]


def bench_silero(models: Models, pcm: bytes) -> list[float]:
    mono = np.frombuffer(pcm, dtype="<i2").reshape(-1, 2).mean(axis=1) / 32768
    audio = soxr.resample(mono.astype(np.float32), 48_000, 16_000)
    state = SileroState()
    times = []
    for i in range(0, len(audio) - 512, 512):
        window = np.ascontiguousarray(audio[i : i + 512])
        started = time.perf_counter()
        models.speech_probability(window, state)
        times.append(time.perf_counter() - started)
    return times


def bench_smart_turn(models: Models, pcm: bytes, pauses: int) -> dict[str, list[float]]:
    mono = np.frombuffer(pcm, dtype="<i2").reshape(-1, 2).mean(axis=1).astype("<i2")
    turns = [mono[i * 48_000 : i * 48_000 + 8 * 48_000] for i in range(pauses)]
    out: dict[str, list[float]] = {"resample": [], "features": [], "inference": [], "total": []}
    for turn in turns:
        t0 = time.perf_counter()
        audio = soxr.resample(turn.astype(np.float32) / 32768, 48_000, 16_000)
        t1 = time.perf_counter()
        x = feat.log_mel(feat.fit(audio))[None]
        t2 = time.perf_counter()
        models._smart_turn.run(None, {"input_features": x})
        t3 = time.perf_counter()
        out["resample"].append(t1 - t0)
        out["features"].append(t2 - t1)
        out["inference"].append(t3 - t2)
        out["total"].append(t3 - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="speech fed per detector")
    parser.add_argument("--pauses", type=int, default=30, help="Smart Turn inferences timed")
    args = parser.parse_args()

    pcm = speech(args.seconds)
    chunks = frames(pcm)
    print(f"{len(chunks)} frames ({args.seconds:g} s) of espeak-ng speech, {os.cpu_count()} cores")

    started = time.perf_counter()
    detector = SmartTurnDetector()
    models = detector.models()
    loaded = time.perf_counter() - started
    started = time.perf_counter()
    models.warm()
    print(
        f"load both models: {loaded * 1000:.0f} ms; first inference (warm): "
        f"{(time.perf_counter() - started) * 1000:.0f} ms"
    )

    bench_webrtcvad(chunks[:100])  # warm caches for a fair baseline
    base = bench_webrtcvad(chunks)
    feed = bench_feed(detector, chunks, pauses=False)
    feed_pauses = bench_feed(detector, chunks, pauses=True)
    silero = bench_silero(models, pcm)
    ratio = statistics.median(feed) / statistics.median(base)
    share = statistics.median(feed) / 0.02 * 100
    print("\nper 20 ms frame")
    print(f"  {'webrtcvad (baseline)':27} {micros(base)}")
    print(f"  {'feed(), no pauses':27} {micros(feed)}   x{ratio:.1f}; {share:.2f}% of 20 ms")
    print(f"  {'feed(), pausing (defaults)':27} {micros(feed_pauses)}   (joins the clip, queues)")
    print(f"  {'Silero alone, per window':27} {micros(silero)}   (0.625 windows per frame)")

    print(f"\nper pause: Smart Turn on 8 s of audio ({args.pauses} runs)")
    for threads in sorted({1, os.cpu_count() or 1}):
        figures = bench_smart_turn(Models(smart_turn_threads=threads), pcm, args.pauses)
        parts = "  ".join(
            f"{name} {statistics.median(v) * 1000:5.1f} ms" for name, v in figures.items()
        )
        p99 = sorted(figures["total"])[-1] * 1000
        print(f"  {threads} thread(s): {parts}   (max total {p99:.1f} ms)")
    print(
        "\nA complete turn ends pause_ms (200) + one Smart Turn run + up to one poll (50 ms)"
        " after the last word; the core's webrtcvad detector waits silence_ms (700)."
    )


if __name__ == "__main__":
    main()
