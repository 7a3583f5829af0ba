"""The Smart Turn detector (plugins/turn_smart) in a real voice session.

Real speech (espeak-ng) goes through the loopback voice server (DAVE on) to
the real HarkBot, whose server uses the turn_smart detector (Silero VAD + Smart
Turn v3). The session's stage trace shows when the detector ended each turn.
"""

from __future__ import annotations

import asyncio
import subprocess
import time

import hark_turn_smart
import pytest

from hark import hookimpl
from hark.audio import convert, read_wav
from hark.testing.fakes import EchoGenerator, FakeSynthesizer, FakeTranscriber
from hark.testing.harness import BotHarness

pytestmark = pytest.mark.slow


class Providers:
    def __init__(self, transcriber: FakeTranscriber) -> None:
        self.transcriber = transcriber

    @hookimpl
    def register_transcribers(self, register):
        register(self.transcriber)

    @hookimpl
    def register_generators(self, register):
        register(EchoGenerator())

    @hookimpl
    def register_synthesizers(self, register):
        register(FakeSynthesizer())


def espeak(text: str, tmp_path) -> object:
    # Smart Turn's verdicts on these two were checked across 130-170 wpm
    # (plugins/turn_smart/tests): ~0.97 complete, ~0.01-0.1 incomplete.
    path = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), text], check=True)
    return convert(read_wav(path.read_bytes()), 48_000, 2)


async def turn_end_delay(h: BotHarness, session, speech) -> float:
    """Seconds from the member's last packet to the session's end of turn (its trace)."""
    began = time.monotonic()
    await h.server.speak(h.member, speech, trailing_silence=0)
    spoken = time.monotonic()
    async with asyncio.timeout(20):
        while session.trace.get("turn_end", 0.0) < began:
            await asyncio.sleep(0.02)
    return session.trace["turn_end"] - spoken


async def test_smart_turn_ends_a_complete_sentence_early_and_holds_an_incomplete_one(tmp_path):
    complete = espeak("Please turn on the kitchen lights.", tmp_path)
    incomplete = espeak("I want to go to the", tmp_path)
    transcriber = FakeTranscriber("heard")
    async with BotHarness(
        tmp_path,
        plugins={"turn_smart": hark_turn_smart, "v": Providers(transcriber)},
        config={"rate_limit": "0"},
    ) as h:
        h.server.set_voice_state(h.member, h.voice_channel)
        assert "Joined" in (await h.ask("!join")).content
        await h.server.wait_for_voice_connection(h.guild)
        assert "Listening" in (await h.ask("!listen")).content
        await h.server.wait_for_dave(h.voice_channel, timeout=15)
        session = h.bot.get_cog("Voice").sessions[h.guild.id]
        assert session.detector().plugin_id == "turn_smart"  # the plugin won the default

        # Complete: the turn ends well before webrtcvad's 700 ms of silence would.
        delay = await turn_end_delay(h, session, complete)
        assert delay < 0.6, f"complete sentence held {delay:.2f}s past its end"
        await asyncio.sleep(1.0)
        # Incomplete: held past the short pause, towards max_wait (2 s).
        delay = await turn_end_delay(h, session, incomplete)
        assert delay > 1.0, f"incomplete sentence ended {delay:.2f}s after its end"
