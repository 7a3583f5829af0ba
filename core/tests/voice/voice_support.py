"""Helpers shared by the voice tests (test_voice_*.py, test_turn_*.py): a plugin of
fake providers, joining and listening, waiting for the bot's posts, and making and
reading audio."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from hark import hookimpl
from hark.providers import AudioClip
from hark.testing.fakes import EchoGenerator
from hark.testing.harness import BotHarness

CONFIG = {"trigger_names": ["robot"], "rate_limit": "0"}
RATE = 48_000
STEREO_FRAME = 3840  # 20 ms of 48 kHz stereo s16le


def plugin(
    transcriber: Any,
    synthesizer: Any,
    generator: Any = None,
    detectors: Iterable[Any] = (),
) -> types.ModuleType:
    """A plugin module registering these fakes (and turn detectors, if any)."""
    module = types.ModuleType("fake_voice")
    generator = generator or EchoGenerator()
    detectors = list(detectors)

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
    if detectors:

        @hookimpl
        def register_turn_detectors(register):
            for detector in detectors:
                register(detector)

        module.register_turn_detectors = register_turn_detectors
    return module


async def in_voice(h: BotHarness, *members) -> None:
    """``members`` in the voice channel, the bot joined and listening."""
    for member in members:
        h.server.set_voice_state(member, h.voice_channel)
    reply = await h.ask("!join")
    assert "Joined" in reply.content, reply.content
    await h.server.wait_for_voice_connection(h.guild)
    assert "Listening" in (await h.ask("!listen")).content


def session(h: BotHarness):
    return h.bot.get_cog("Voice").sessions[h.guild.id]


async def wait_for_post(h: BotHarness, prefix: str, timeout: float = 20) -> str:
    """The bot's first message in #general starting with ``prefix`` (already posted or not)."""
    for message in h.server.messages(h.channel):
        if message.author.id == h.server.bot_user.id and message.content.startswith(prefix):
            return message.content
    message = await h.server.wait_for_message(
        h.channel,
        author=h.server.bot_user,
        timeout=timeout,
        check=lambda m: m.content.startswith(prefix),
    )
    return message.content


def bot_posts(h: BotHarness, prefix: str = "") -> list[str]:
    return [
        m.content
        for m in h.server.messages(h.channel)
        if m.author.id == h.server.bot_user.id and m.content.startswith(prefix)
    ]


async def wait_until(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    async with asyncio.timeout(timeout):
        while not (result := check()):
            await asyncio.sleep(0.02)
    return result


def speech_only(clip: AudioClip) -> AudioClip:
    """``clip`` (48 kHz stereo) without its quiet tail: espeak ends with ~400 ms of
    near-silence, which would count as trailing silence."""
    pcm = clip.pcm[: len(clip.pcm) - len(clip.pcm) % STEREO_FRAME]
    end = len(pcm)
    while end > 0:
        frame = np.frombuffer(pcm[end - STEREO_FRAME : end], "<i2").astype(np.float64)
        if np.sqrt(np.mean(frame * frame)) >= 150:
            break
        end -= STEREO_FRAME
    return AudioClip(pcm[:end], RATE, 2)


def clip_of(*parts: AudioClip | float) -> AudioClip:
    """48 kHz stereo clips and silences (a float: seconds) one after the other."""
    pcm = b""
    for part in parts:
        if isinstance(part, AudioClip):
            assert (part.sample_rate, part.channels) == (RATE, 2)
            pcm += part.pcm
        else:
            pcm += b"\x00" * (round(part * 50) * STEREO_FRAME)
    return AudioClip(pcm, RATE, 2)


def loud_runs(packets: Iterable[Any], since: float = 0.0) -> list[tuple[bool, float, float]]:
    """The bot's audio after ``since`` as runs of (loud?, first packet time, seconds)."""
    runs: list[list[Any]] = []
    for packet in packets:
        if packet.received_at < since:
            continue
        samples = np.frombuffer(packet.pcm, "<i2").astype(np.float64)
        loud = bool(samples.size) and float(np.sqrt(np.mean(samples * samples))) > 300
        if runs and runs[-1][0] == loud:
            runs[-1][2] += 0.02
        else:
            runs.append([loud, packet.received_at, 0.02])
    return [(loud, at, round(seconds, 2)) for loud, at, seconds in runs]
