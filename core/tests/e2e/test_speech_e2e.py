"""`!say` and spoken replies in text channels, end to end with a fake synthesizer."""

from __future__ import annotations

import types

from hark import hookimpl
from hark.audio import read_wav
from hark.providers.errors import ProviderStatusError
from hark.testing.fakes import EchoGenerator, FakeSynthesizer
from hark.testing.harness import BotHarness

CHAT = {"trigger_names": ["robot"], "edit_interval": 0.05, "rate_limit": "0"}


def plugin(**hooks) -> types.ModuleType:
    module = types.ModuleType("fake_speech")
    for name, providers in hooks.items():

        def hook(register, _providers=providers):
            for provider in _providers:
                register(provider)

        setattr(module, name, hookimpl(hook))
    return module


def speaking(synthesizer) -> dict:
    return {
        "fake_voice": plugin(
            register_synthesizers=[synthesizer], register_generators=[EchoGenerator()]
        )
    }


async def test_say_posts_a_valid_voice_wav(tmp_path):
    async with BotHarness(tmp_path, plugins=speaking(FakeSynthesizer()), config=CHAT) as h:
        reply = await h.ask("!say hello there")
        assert [a.filename for a in reply.attachments] == ["voice.wav"]
        clip = read_wav(reply.attachments[0].data)
        assert clip.sample_rate == 24_000 and clip.channels == 1
        # FakeSynthesizer speaks 10 ms per character: "hello there" is ~0.11 s of tone.
        assert clip.duration > 0.1 and len(reply.attachments[0].data) > 4_000
        assert list(tmp_path.rglob("*.wav")) == []  # nothing written to disk


async def test_say_failure_is_a_notice(tmp_path):
    failing = FakeSynthesizer(fail_with=[ProviderStatusError("bad key", status=401)])
    async with BotHarness(tmp_path, plugins=speaking(failing), config=CHAT) as h:
        reply = await h.ask("!say hello")
        assert "rejected the bot's credentials" in reply.content and not reply.attachments


async def test_replies_carry_speech_when_enabled(tmp_path):
    async with BotHarness(tmp_path, plugins=speaking(FakeSynthesizer()), config=CHAT) as h:
        assert "off" in (await h.ask("!speech")).content
        refused = await h.ask("!speech attach on")
        assert "Manage Server" in refused.content
        await h.ask("!speech attach on", author=h.admin)
        reply = await h.ask("robot, say something")
        message = await h.server.wait_for_edit(reply, check=lambda m: bool(m.attachments))
        assert message.content == "robot, say something"
        assert message.attachments[0].filename == "voice.wav"
        # a channel override switches it off here
        await h.ask("!speech channel off", author=h.admin)
        plain = await h.ask("robot, quietly")
        await h.expect_silence(within=0.5)
        assert not plain.attachments


async def test_speech_failure_still_delivers_the_text(tmp_path):
    failing = FakeSynthesizer(fail_with=[ProviderStatusError("down", status=503)] * 10)
    async with BotHarness(tmp_path, plugins=speaking(failing), config=CHAT) as h:
        await h.ask("!speech attach on", author=h.admin)
        reply = await h.ask("robot, hello")
        await h.expect_silence(within=0.5)
        assert reply.content == "robot, hello" and not reply.attachments
