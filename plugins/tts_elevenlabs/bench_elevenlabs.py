"""How much the plugin adds on top of the HTTP request itself (a benchmark, not a test).

Starts the loopback fake ElevenLabs server (``fake_elevenlabs``) and,
for the same text, times

- **plugin**: ``ElevenLabsSynthesizer.synthesize()`` as the bot calls it: the core's
  wrapper (deadline, retry bookkeeping, metrics), the official ``elevenlabs`` client
  (httpx), sample alignment and soxr resampling to 48 kHz stereo;
- **raw**: one ``aiohttp`` POST of the same request to the same server, reading the
  PCM body as it arrives and doing nothing with it;
- **httpx**: the same raw request through ``httpx``, the HTTP library under the
  official client, to tell the transport's share of the overhead from the plugin's.

It prints the time to the first chunk and the total time (median and 90th percentile
over ``--runs``) and the plugin/raw ratio. Nothing leaves 127.0.0.1::

    python plugins/tts_elevenlabs/bench_elevenlabs.py
    python plugins/tts_elevenlabs/bench_elevenlabs.py --runs 50 --chars 2000 --chunk-bytes 1001
    python plugins/tts_elevenlabs/bench_elevenlabs.py --chunk-delay 0.005   # a paced stream
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx
from hark_tts_elevenlabs import ElevenLabsSynthesizer, voice_settings
from hark_tts_elevenlabs.synthesizer import OUTPUT_FORMAT

# The loopback fake lives with the plugin's tests (no test code in the wheel).
sys.path.insert(0, str(Path(__file__).resolve().parent / "tests"))
from fake_elevenlabs import FakeElevenLabs

KEY = "sk_bench_0000000000000000000000000000"
SENTENCE = "The quick brown fox jumps over the lazy dog, and then it rests a while. "

Timing = tuple[float, float]  # (seconds to the first chunk, seconds in all)


async def time_plugin(synth: ElevenLabsSynthesizer, text: str) -> Timing:
    started = time.perf_counter()
    first = None
    async for _clip in synth.synthesize(text):
        if first is None:
            first = time.perf_counter() - started
    return first or 0.0, time.perf_counter() - started


async def time_httpx(client: httpx.AsyncClient, url: str, body: dict, text: str) -> Timing:
    started = time.perf_counter()
    first = None
    async with client.stream(
        "POST",
        url,
        params={"output_format": OUTPUT_FORMAT},
        json={**body, "text": text},
        headers={"xi-api-key": KEY},
    ) as response:
        response.raise_for_status()
        async for _chunk in response.aiter_raw():
            if first is None:
                first = time.perf_counter() - started
    return first or 0.0, time.perf_counter() - started


async def time_raw(session: aiohttp.ClientSession, url: str, body: dict, text: str) -> Timing:
    started = time.perf_counter()
    first = None
    async with session.post(
        url,
        params={"output_format": OUTPUT_FORMAT},
        json={**body, "text": text},
        headers={"xi-api-key": KEY},
    ) as response:
        response.raise_for_status()
        async for _chunk in response.content.iter_any():
            if first is None:
                first = time.perf_counter() - started
    return first or 0.0, time.perf_counter() - started


def summary(timings: list[Timing]) -> tuple[float, float, float, float]:
    firsts = sorted(t[0] for t in timings)
    totals = sorted(t[1] for t in timings)

    def p90(values: list[float]) -> float:
        return values[min(len(values) - 1, round(0.9 * (len(values) - 1)))]

    return statistics.median(firsts), p90(firsts), statistics.median(totals), p90(totals)


async def measure(runs: int, call: Callable[[], Awaitable[Timing]]) -> list[Timing]:
    await call()  # warm-up: connection pool, imports, resampler set-up
    return [await call() for _ in range(runs)]


async def main(args: argparse.Namespace) -> None:
    text = (SENTENCE * (args.chars // len(SENTENCE) + 1))[: args.chars].strip()
    async with FakeElevenLabs(
        api_key=KEY,
        chunk_bytes=args.chunk_bytes,
        chunk_delay=args.chunk_delay,
        seconds_per_char=args.seconds_per_char,
    ) as server:
        voice = server.voice_ids[0]
        environ = {"ELEVENLABS_VOICE_ID": voice}
        synth = ElevenLabsSynthesizer(api_key=KEY, base_url=server.url, environ=environ)
        synth.plugin_id = "tts_elevenlabs"
        settings = voice_settings(synth.bot_wide()).model_dump(exclude_none=True)
        body = {"model_id": synth.default_model, "voice_settings": settings}
        url = f"{server.url}/v1/text-to-speech/{voice}/stream"
        audio_seconds = server.seconds_for(text)
        try:
            plugin = await measure(args.runs, lambda: time_plugin(synth, text))
            async with aiohttp.ClientSession() as session:
                raw = await measure(args.runs, lambda: time_raw(session, url, body, text))
            async with httpx.AsyncClient() as client:
                via_httpx = await measure(args.runs, lambda: time_httpx(client, url, body, text))
        finally:
            await synth.aclose()

    print(
        f"{args.runs} runs, {len(text)} characters -> {audio_seconds:.1f}s of 22,050 Hz PCM"
        f" in {args.chunk_bytes}-byte HTTP chunks"
        + (f", {args.chunk_delay * 1000:g} ms apart" if args.chunk_delay else "")
    )
    print(f"{'':8}{'first chunk p50':>17}{'p90':>10}{'total p50':>12}{'p90':>11}")
    rows = {"plugin": summary(plugin), "raw": summary(raw), "httpx": summary(via_httpx)}
    for name, (f50, f90, t50, t90) in rows.items():
        print(
            f"{name:8}{f50 * 1000:>14.2f} ms{f90 * 1000:>7.2f} ms"
            f"{t50 * 1000:>9.2f} ms{t90 * 1000:>8.2f} ms"
        )
    (pf, _, pt, _), (rf, _, rt, _) = rows["plugin"], rows["raw"]
    hf, ht = rows["httpx"][0], rows["httpx"][2]
    print(f"plugin/raw   {pf / rf:>9.2f} x{'':10}{pt / rt:>9.2f} x")
    print(f"plugin/httpx {pf / hf:>9.2f} x{'':10}{pt / ht:>9.2f} x")
    print(f"real-time factor of the plugin: {audio_seconds / pt:.0f}x faster than playback")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="timed runs per path (default 20)")
    parser.add_argument("--chars", type=int, default=500, help="text length (default 500)")
    parser.add_argument("--chunk-bytes", type=int, default=4096, help="HTTP chunk size")
    parser.add_argument(
        "--chunk-delay", type=float, default=0.0, help="seconds between chunks (default 0)"
    )
    parser.add_argument(
        "--seconds-per-char", type=float, default=0.02, help="audio per character (0.02)"
    )
    options = parser.parse_args()
    if not 1 <= options.runs <= 1000 or not 1 <= options.chars <= 5000:
        parser.error("--runs must be 1..1000 and --chars 1..5000")
    asyncio.run(main(options))
