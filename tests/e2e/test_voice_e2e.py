"""Voice end to end with real local models and real client libraries.

A fake member speaks real speech (Piper's voice) into the loopback voice server;
the bot receives it over encrypted RTP, detects the end of the turn (webrtcvad),
transcribes it with the real Whisper tiny.en model (stt_whisper), asks the LLM
through the real ``ollama`` client (llm_ollama -> FakeOllama), speaks the answer
with the real Piper voice (tts_piper), and the test decodes the RTP the bot sent
and transcribes it again to check what was said. Slow-ish: each case runs once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import hark_llm_ollama
import hark_stt_whisper
import hark_tts_piper
import pytest
from fake_ollama import FakeOllama
from hark_tts_piper.synthesizer import PiperSynthesizer

from hark.audio import convert
from hark.providers import AudioClip
from hark.testing.harness import BotHarness

pytestmark = pytest.mark.slow
PLUGINS = {
    "stt_whisper": hark_stt_whisper,
    "tts_piper": hark_tts_piper,
    "llm_ollama": hark_llm_ollama,
}


async def piper_says(text: str) -> AudioClip:
    clips = [clip async for clip in PiperSynthesizer().synthesize(text)]
    return AudioClip(b"".join(c.pcm for c in clips), clips[0].sample_rate, clips[0].channels)


@pytest.fixture
async def ollama(monkeypatch) -> AsyncIterator[FakeOllama]:
    for name in ("OPENAI_API_KEY", "WHISPER_MODE", "WHISPER_MODEL", "PIPER_MODEL", "PIPER_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    async with FakeOllama(reply="The kitchen lights are on now.") as server:
        monkeypatch.setenv("OLLAMA_HOST", server.url)
        yield server


async def join_and_listen(h: BotHarness, *members) -> None:
    for member in members:
        h.server.set_voice_state(member, h.voice_channel)
    assert "Joined" in (await h.ask("!join")).content
    await h.server.wait_for_voice_connection(h.guild)
    assert "Listening" in (await h.ask("!listen")).content


async def posts(h: BotHarness, prefix: str, count: int, timeout: float = 60) -> list[str]:
    async with asyncio.timeout(timeout):
        while True:
            found = [
                m.content
                for m in h.server.messages(h.channel)
                if m.author.id == h.server.bot_user.id and m.content.startswith(prefix)
            ]
            if len(found) >= count:
                return found
            await asyncio.sleep(0.1)


async def test_spoken_question_is_transcribed_answered_and_spoken_back(tmp_path, ollama):
    question = await piper_says("Please turn on the kitchen lights.")
    async with BotHarness(tmp_path, plugins=PLUGINS, config={"rate_limit": "0"}) as h:
        await join_and_listen(h, h.member)
        await h.server.speak(h.member, question)

        heard = (await posts(h, "🎙️", 1))[0].lower()
        assert heard.startswith("🎙️ **alice**:") and "kitchen" in heard and "light" in heard
        assert (await posts(h, "🔊", 1))[0] == "🔊 The kitchen lights are on now."
        # The LLM got the transcript, with the speaker's name, through the real client.
        asked = ollama.last_chat["messages"][-1]["content"].lower()
        assert asked.startswith("alice: ") and "kitchen" in asked

        # What the bot played, decoded from RTP, is Piper saying the reply.
        await h.server.wait_for_bot_audio(h.guild, seconds=1.0, timeout=30)
        async with asyncio.timeout(30):
            while h.server.bot_speaking(h.guild):
                await asyncio.sleep(0.1)
        played = AudioClip(h.server.bot_audio(h.guild), 48_000, 2)
        assert played.duration > 1.0
        # All of it on a DAVE call: encrypted by the bot, decrypted by alice's client.
        assert h.server.dave_call(h.voice_channel).protocol_version == 1
        assert all(p.dave for p in h.server.bot_audio_packets(h.guild) if not p.silence)
        heard_by_alice = h.server.voice_member(h.member).heard_audio(h.server.bot_user.id)
        assert len(heard_by_alice) >= len(played.pcm) * 0.9
        whisper = h.bot.control.find(
            h.bot.control.manager.providers(hark_stt_whisper.LocalWhisperTranscriber.capability)[
                0
            ].capability,
            "stt_whisper:local",
        )
        said = (await whisper.transcribe(convert(played, 16_000, 1))).text.lower()
        assert "kitchen" in said and "light" in said


async def test_two_speakers_are_transcribed_separately(tmp_path, ollama):
    alice_says = await piper_says("Please turn on the kitchen lights.")
    boss_says = await piper_says("What is the weather like today?")
    async with BotHarness(tmp_path, plugins=PLUGINS, config={"rate_limit": "0"}) as h:
        await join_and_listen(h, h.member, h.admin)
        await asyncio.gather(
            h.server.speak(h.member, alice_says), h.server.speak(h.admin, boss_says)
        )
        heard = {line.split("**")[1]: line.lower() for line in await posts(h, "🎙️", 2)}
        assert "kitchen" in heard["alice"] and "weather" not in heard["alice"]
        assert "weather" in heard["boss"] and "kitchen" not in heard["boss"]
