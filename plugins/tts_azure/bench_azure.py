"""Overhead of the Azure Speech plugin over a bare HTTP request (a benchmark, not a test).

Both sides talk to the same loopback fake Azure TTS server
(:class:`fake_azure.FakeAzureTTS`) with the same SSML and headers:

* **raw**: one ``aiohttp`` POST, reading the chunked PCM body as it arrives;
* **plugin**: ``AzureSynthesizer.synthesize()`` through the core's public method
  (deadline, retries, metrics), SSML building, and mono -> Discord stereo conversion.

It prints the median and 90th percentile of the time to the first chunk and to the
end of the stream for each, and the plugin/raw ratio. Runs alternate between the
two so that drift on the machine hits both alike. Nothing leaves 127.0.0.1.

    python plugins/tts_azure/bench_azure.py              # defaults
    python plugins/tts_azure/bench_azure.py --runs 200 --chunk-delay 0.002
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
from hark_tts_azure import AzureSynthesizer
from hark_tts_azure.settings import DEFAULT_VOICE
from hark_tts_azure.ssml import build_ssml

# The loopback fake lives with the plugin's tests (no test code in the wheel).
sys.path.insert(0, str(Path(__file__).resolve().parent / "tests"))
from fake_azure import FakeAzureTTS

KEY = "bench-key-0123456789abcdef0123456789"
TEXT = (
    "Hello there, this is the first sentence. "
    "Here comes a second one, a little longer than the first."
)

Timing = tuple[float, float]  # (first chunk, whole stream), seconds


async def raw_request(session: aiohttp.ClientSession, url: str, ssml: bytes) -> Timing:
    headers = {
        "Ocp-Apim-Subscription-Key": KEY,
        "Content-Type": "application/ssml+xml",
        "X-Microsoft-OutputFormat": "raw-48khz-16bit-mono-pcm",
        "User-Agent": "hark-bench",
    }
    started = time.perf_counter()
    first = None
    async with session.post(url, data=ssml, headers=headers) as response:
        response.raise_for_status()
        async for _ in response.content.iter_any():
            if first is None:
                first = time.perf_counter() - started
    return first or 0.0, time.perf_counter() - started


async def plugin_request(synthesizer: AzureSynthesizer, text: str) -> Timing:
    started = time.perf_counter()
    first = None
    async for _ in synthesizer.synthesize(text):
        if first is None:
            first = time.perf_counter() - started
    return first or 0.0, time.perf_counter() - started


def summary(name: str, timings: list[Timing]) -> tuple[float, float]:
    firsts = sorted(t[0] for t in timings)
    totals = sorted(t[1] for t in timings)

    def p90(values: list[float]) -> float:
        return values[min(len(values) - 1, round(0.9 * (len(values) - 1)))]

    first_median, total_median = statistics.median(firsts), statistics.median(totals)
    print(
        f"{name:<7} first chunk median {first_median * 1000:8.3f} ms  p90 {p90(firsts) * 1000:8.3f}"
        f" ms | whole stream median {total_median * 1000:8.3f} ms  p90 {p90(totals) * 1000:8.3f} ms"
    )
    return first_median, total_median


async def main(args: argparse.Namespace) -> None:
    async with FakeAzureTTS(
        key=KEY, chunk_bytes=args.chunk_bytes, chunk_delay=args.chunk_delay
    ) as azure:
        synthesizer = AzureSynthesizer(api_key=KEY, endpoint=azure.url, environ={})
        synthesizer.plugin_id = "tts_azure"
        ssml = build_ssml(args.text, DEFAULT_VOICE).encode("utf-8")
        audio_seconds = len(azure.expected_pcm(args.text, DEFAULT_VOICE)) / 96_000
        url = f"{azure.url}/cognitiveservices/v1"
        async with aiohttp.ClientSession() as session:
            runners: dict[str, Callable[[], Awaitable[Timing]]] = {
                "raw": lambda: raw_request(session, url, ssml),
                "plugin": lambda: plugin_request(synthesizer, args.text),
            }
            for run in runners.values():  # warm up: connections, imports, caches
                await run()
            results: dict[str, list[Timing]] = {name: [] for name in runners}
            for i in range(args.runs):
                order = list(runners) if i % 2 == 0 else list(reversed(runners))
                for name in order:
                    results[name].append(await runners[name]())
        await synthesizer.aclose()

    print(
        f"{args.runs} runs each; {len(args.text)} characters -> {audio_seconds:.2f}s of audio"
        f" ({args.chunk_bytes}-byte chunks, {args.chunk_delay * 1000:g} ms apart)"
    )
    raw_first, raw_total = summary("raw", results["raw"])
    plugin_first, plugin_total = summary("plugin", results["plugin"])
    print(
        f"ratio plugin/raw: first chunk {plugin_first / raw_first:.2f}x,"
        f" whole stream {plugin_total / raw_total:.2f}x"
        f" (+{(plugin_total - raw_total) * 1000:.3f} ms per request)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=50, help="timed requests per side")
    parser.add_argument("--text", default=TEXT, help="the text to speak")
    parser.add_argument("--chunk-bytes", type=int, default=4800, help="server chunk size")
    parser.add_argument(
        "--chunk-delay", type=float, default=0.0, help="seconds between server chunks"
    )
    asyncio.run(main(parser.parse_args()))
