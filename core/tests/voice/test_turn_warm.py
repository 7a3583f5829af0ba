"""Warm models: the server's transcriber, generator, synthesizer and turn detector are
warmed at `join` and `listen`, and at start-up for servers that had a voice session,
so the first turn includes no model load (the stage trace says whether it waited)."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel
from voice_support import CONFIG, in_voice, plugin, session, wait_for_post, wait_until

import hark
from hark.testing.fakes import EchoGenerator, FakeSynthesizer, FakeTranscriber
from hark.testing.harness import BotHarness
from hark.voice.turns import WebRTCTurnDetector


class Loading:
    """A provider with a "model" that takes ``load_s`` to load: in warm(), or else in
    the first call. Records where it was loaded."""

    def __init__(self, *args, load_s: float = 0.3, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.load_s = load_s
        self.warms = 0
        self.loaded_by: str | None = None

    async def _load(self, by: str) -> None:
        if self.loaded_by is None:
            await asyncio.sleep(self.load_s)
            self.loaded_by = self.loaded_by or by

    async def warm(self) -> None:
        self.warms += 1
        await self._load("warm")


class LoadingTranscriber(Loading, FakeTranscriber):
    async def _impl(self, clip, **kwargs):
        await self._load("a turn")
        return await super()._impl(clip, **kwargs)


class LoadingSynthesizer(Loading, FakeSynthesizer):
    async def _impl(self, text, **kwargs):
        await self._load("a turn")
        async for clip in super()._impl(text, **kwargs):
            yield clip


class LoadingGenerator(Loading, EchoGenerator):
    async def _impl(self, request):
        await self._load("a turn")
        async for delta in super()._impl(request):
            yield delta


class WarmDetector(Loading, WebRTCTurnDetector):
    default_priority = 1


def providers(load_s: float = 0.3):
    return (
        LoadingTranscriber("what time is it", load_s=load_s),
        LoadingSynthesizer(load_s=load_s),
        LoadingGenerator(load_s=load_s),
        WarmDetector(load_s=load_s),
    )


async def test_join_and_listen_warm_everything_and_the_first_turn_does_not_wait(tmp_path, speech):
    transcriber, synthesizer, generator, detector = all_of = providers()
    module = plugin(transcriber, synthesizer, generator, detectors=[detector])
    async with BotHarness(tmp_path, plugins={"v": module}, config=CONFIG) as h:
        h.server.set_voice_state(h.member, h.voice_channel)
        assert "Joined" in (await h.ask("!join")).content
        await wait_until(lambda: all(p.warms == 1 for p in all_of), 5)
        s = session(h)
        await wait_until(lambda: s.warm_done_at is not None, 5)
        await h.server.wait_for_voice_connection(h.guild)
        # `listen` warms again (connections may have gone idle since `join`).
        assert "Listening" in (await h.ask("!listen")).content
        await wait_until(lambda: all(p.warms == 2 for p in all_of), 5)
        await h.server.speak(h.member, speech)
        await wait_for_post(h, "🔊 what time is it")
        # Every model was loaded by warm(), none by the first turn, which did not wait.
        assert {p.loaded_by for p in all_of} == {"warm"}
        assert s.trace["warm_done"] < s.trace["speech_start"]
        assert "warm_waited" not in s.trace


async def test_a_turn_during_the_warm_up_waits_for_it_and_says_so(tmp_path, speech):
    transcriber, synthesizer, generator, detector = all_of = providers(load_s=3.5)
    module = plugin(transcriber, synthesizer, generator, detectors=[detector])
    async with BotHarness(tmp_path, plugins={"v": module}, config=CONFIG) as h:
        await in_voice(h, h.member)
        s = session(h)
        await h.server.speak(h.member, speech)  # ~2.3 s: the warm-up is still running
        await wait_for_post(h, "🔊 what time is it", timeout=20)
        assert {p.loaded_by for p in all_of} == {"warm"}  # loaded once, by warm()
        assert s.trace["turn_pause"] <= s.trace["warm_waited"] < s.trace["warm_done"]


async def test_servers_that_had_a_voice_session_are_warmed_at_start_up(tmp_path):
    transcriber, synthesizer, generator, detector = all_of = providers(load_s=0.0)
    module = plugin(transcriber, synthesizer, generator, detectors=[detector])
    async with BotHarness(tmp_path, plugins={"v": module}, config=CONFIG) as h:
        await in_voice(h, h.member)
        # `listen` right after `join` may find the join's warm-up still under way (then
        # it is not started twice): one or two warm-ups.
        await wait_until(lambda: all(p.warms >= 1 for p in all_of), 5)
        s = session(h)
        await wait_until(lambda: s.warm_done_at is not None, 5)
        before = [p.warms for p in all_of]
        await h.restart()  # shut down while in voice
        # Warmed again without anyone using `join` (the bot does not rejoin by itself).
        await wait_until(
            lambda: all(p.warms == n + 1 for p, n in zip(all_of, before, strict=True)), 10
        )
        assert h.guild.id not in h.bot.get_cog("Voice").sessions
        # After `leave`, the server is forgotten: no warm-up at the next start.
        await in_voice(h, h.member)
        assert "Left" in (await h.ask("!leave")).content
        warms = [p.warms for p in all_of]
        await h.restart()
        await asyncio.sleep(1.0)
        assert [p.warms for p in all_of] == warms


class Nothing(BaseModel):
    pass


class PrimedGenerator(EchoGenerator):
    """Records what Generator.prime was given."""

    def __init__(self, **kwargs) -> None:
        super().__init__(supports_tools=True, **kwargs)
        self.primed: list[tuple[list, list[str]]] = []

    async def prime(self, messages, *, tools=(), guild_id=None) -> None:
        self.primed.append((list(messages), [spec.name for spec in tools]))


async def test_the_generator_is_primed_with_how_the_servers_turns_begin(tmp_path, speech):
    @hark.tool
    async def lights(args: Nothing, ctx: hark.ToolContext) -> str:
        """Turn the lights on."""
        return "on"

    generator = PrimedGenerator()
    module = plugin(FakeTranscriber("what time is it"), FakeSynthesizer(), generator)
    tools = hark.Plugin(description="Home", tools=[lights])
    async with BotHarness(tmp_path, plugins={"v": module, "home": tools}, config=CONFIG) as h:
        await h.ask("!persona You are Brassy, a robot butler.", author=h.server.owner)
        await in_voice(h, h.member)
        await wait_until(lambda: generator.primed, 5)  # at join (and listen, if it was done)
        messages, offered = generator.primed[-1]
        assert offered == ["lights"]
        assert any("Brassy" in m.content for m in messages if m.role == "system")
        await h.server.speak(h.member, speech)
        await wait_for_post(h, "🔊 what time is it")
        # The first turn begins exactly as primed: a local server reuses what it evaluated.
        sent = generator.requests[0].messages
        assert list(sent[: len(messages)]) == messages
