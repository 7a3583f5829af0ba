"""Benchmark: how soon Piper's first audio arrives and how fast it speaks, through the plugin
and raw, in the same run.

    python plugins/tts_piper/bench_piper.py [--repeats 5]

For a two-sentence and a ten-sentence reply it prints, as the median of the repeats:

- time to first audio (TTFA): from the call to the first chunk in hand;
- real-time factor (RTF): synthesis time / audio duration (below 1 is faster than speech);

for the baseline (``PiperVoice.synthesize`` iterated directly: no worker thread, no
queue, no resampling, 22,050 Hz mono) and for the plugin (``PiperSynthesizer.synthesize``
through the core's public method: text cleanup, sentence pieces, worker thread, asyncio
queue, 48 kHz stereo). The plugin/baseline ratio is its overhead; it is measured on
the same machine in the same run, so it means something where absolute figures don't.
The voice is loaded (and warmed up) before anything is timed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from hark_tts_piper import PiperSynthesizer, load_voice, resolve_paths

TWO = "Sure, I can help with that. The meeting starts at three in the afternoon."
TEN = " ".join(
    [
        "Here is what happened today.",
        "The team finished the new release in the morning.",
        "After lunch, we tested it on three different machines.",
        "Two of them worked perfectly on the first try.",
        "The third one needed a small change to its settings.",
        "Once that was fixed, every test passed.",
        "We then wrote the release notes together.",
        "They explain the new features and the known problems.",
        "Tomorrow we will announce it to everyone.",
        "Let me know if you have any questions.",
    ]
)


def bench_raw(voice, text: str) -> tuple[float, float, float]:
    """(TTFA, total seconds, audio seconds) of Piper alone."""
    started = time.perf_counter()
    first = None
    audio = 0.0
    for chunk in voice.piper.synthesize(text):
        if first is None:
            first = time.perf_counter() - started
        audio += len(chunk.audio_int16_bytes) / 2 / chunk.sample_rate
    return first or 0.0, time.perf_counter() - started, audio


async def bench_plugin(synth: PiperSynthesizer, text: str) -> tuple[float, float, float]:
    """(TTFA, total seconds, audio seconds) through the plugin."""
    started = time.perf_counter()
    first = None
    audio = 0.0
    async for clip in synth.synthesize(text):
        if first is None:
            first = time.perf_counter() - started
        audio += clip.duration
    return first or 0.0, time.perf_counter() - started, audio


def median(rows: list[tuple[float, float, float]], index: int) -> float:
    return statistics.median(row[index] for row in rows)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per case (median)")
    args = parser.parse_args()

    paths = resolve_paths()
    started = time.perf_counter()
    voice = load_voice(paths)
    print(f"voice {voice.name} ({paths.source}), loaded in {time.perf_counter() - started:.2f}s")
    synth = PiperSynthesizer()
    synth.plugin_id = "tts_piper"
    # Warm up both paths (ONNX Runtime's first run allocates).
    bench_raw(voice, TWO)
    await bench_plugin(synth, TWO)

    header = (
        f"{'case':<14}{'path':<10}{'TTFA s':>8}{'total s':>9}{'audio s':>9}{'RTF':>7}"
        f"{'TTFA ×':>8}{'RTF ×':>7}"
    )
    print(header)
    print("-" * len(header))
    for label, text in (("two sentences", TWO), ("ten sentences", TEN)):
        raw: list[tuple[float, float, float]] = []
        plugin: list[tuple[float, float, float]] = []
        for _ in range(args.repeats):  # interleaved, so drift hits both alike
            raw.append(bench_raw(voice, text))
            plugin.append(await bench_plugin(synth, text))
        raw_ttfa, raw_rtf = median(raw, 0), median(raw, 1) / median(raw, 2)
        ttfa, rtf = median(plugin, 0), median(plugin, 1) / median(plugin, 2)
        print(
            f"{label:<14}{'baseline':<10}{raw_ttfa:>8.3f}{median(raw, 1):>9.3f}"
            f"{median(raw, 2):>9.2f}{raw_rtf:>7.3f}{'':>8}{'':>7}"
        )
        print(
            f"{'':<14}{'plugin':<10}{ttfa:>8.3f}{median(plugin, 1):>9.3f}"
            f"{median(plugin, 2):>9.2f}{rtf:>7.3f}{ttfa / raw_ttfa:>8.2f}{rtf / raw_rtf:>7.2f}"
        )
    print(f"(median of {args.repeats}; × = plugin / baseline in this run)")


if __name__ == "__main__":
    asyncio.run(main())
