"""Memory in a voice turn: real discord.py voice against the loopback voice server,
real speech from espeak-ng (installed by scripts/test), fake STT/LLM/TTS."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import types

import hark_memory
import pytest
from memory_support import Brain, last_prompt, memory_config, wait_for_facts

from hark import hookimpl
from hark.audio import convert, read_wav
from hark.testing.fakes import FakeGenerator, FakeSynthesizer, FakeTranscriber
from hark.testing.harness import BotHarness


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> object:
    """About two seconds of real speech, 48 kHz stereo like Discord delivers."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed (scripts/test installs it)")
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    text = "robot what is my cat called"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), text], check=True)
    return convert(read_wav(path.read_bytes()), 48_000, 2)


def voice_plugin(transcriber, synthesizer, generator) -> types.ModuleType:
    """A plugin module registering the fake voice providers (as core's voice tests do)."""
    module = types.ModuleType("fake_voice")

    @hookimpl
    def register_transcribers(register):
        register(transcriber)

    @hookimpl
    def register_generators(register):
        register(generator)

    @hookimpl
    def register_synthesizers(register):
        register(synthesizer)

    module.register_transcribers = register_transcribers
    module.register_generators = register_generators
    module.register_synthesizers = register_synthesizers
    return module


async def test_a_fact_said_in_text_comes_back_in_a_voice_turn(tmp_path, speech):
    brain = Brain()
    brain.answer = "Miso, of course."
    llm = FakeGenerator(brain)
    synthesizer = FakeSynthesizer(seconds_per_char=0.002)
    voice = voice_plugin(FakeTranscriber("robot, what is my cat called?"), synthesizer, llm)
    plugins = {"memory": hark_memory.plugin, "v": voice}
    async with BotHarness(tmp_path, plugins=plugins, config=memory_config()) as h:
        alice = h.member.user.id
        brain.facts = [{"subject": alice, "text": "has a cat named Miso", "importance": 4}]
        await h.ask("robot, my cat is called Miso")
        await wait_for_facts(h, 1)
        # Voice is started from another channel, whose history is empty: memory is
        # what carries the fact.
        lobby = h.server.create_text_channel(h.guild, "lobby")
        h.server.set_voice_state(h.member, h.voice_channel)
        assert "Joined" in (await h.ask("!join", channel=lobby)).content
        await h.server.wait_for_voice_connection(h.guild)
        assert "Listening" in (await h.ask("!listen", channel=lobby)).content
        before = len(brain.extractions)
        await h.server.speak(h.member, speech)
        async with asyncio.timeout(20):
            while synthesizer.texts != ["Miso, of course."]:
                await asyncio.sleep(0.02)
        prompt = last_prompt(llm)
        assert "has a cat named Miso" in prompt
        assert "my cat is called Miso" not in prompt  # not from history
        # The voice exchange is learned from as well (record is called for voice).
        async with asyncio.timeout(10):
            while len(brain.extractions) == before:
                await asyncio.sleep(0.02)
        assert "robot, what is my cat called?" in brain.extractions[-1][1].content
