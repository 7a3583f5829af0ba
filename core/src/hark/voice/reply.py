"""Speaking a reply in the voice channel: streamed text -> sentences -> synthesis ->
playback.

:class:`Player` (one per voice session) speaks one :class:`Reply` at a time. The
reply is cut into sentences as it streams; each is synthesized and queued on the
reply's :class:`~hark.voice.playback.SpeechSource` at once, and playback starts with
the first audio. A preemptive reply is *held*: only its first sentence is
synthesized and nothing plays until :meth:`Player.finish` releases it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from hark.audio import DISCORD_CHANNELS, DISCORD_RATE, StreamResampler
from hark.providers import Capability, Synthesizer
from hark.providers.errors import ConfigurationError, ProviderError
from hark.voice.playback import SpeechSource
from hark.voice.sentences import SentenceSplitter

if TYPE_CHECKING:
    from hark.chat.pipeline import Turn
    from hark.control import PluginControl
    from hark.voice.warmup import Warmup

# The session's logger: these lines read (and are filtered) as the session's, as before.
log = logging.getLogger("hark.voice.session")


# A sentence at least this long said again in the same reply: the model is looping
# (small local models do), so the reply ends there. Short ones ("Yes.") may repeat.
REPEAT_MIN_CHARS = 20
_NOT_WORD = re.compile(r"\W+")


def _mark(trace: dict[str, float], stage: str) -> None:
    trace.setdefault(stage, time.monotonic())  # the first time a stage is reached


class SpokenLimit:
    """Where a spoken reply ends early: past ``max_chars`` (0: no cap) or at a long
    sentence the model has already said in it. Listening can't skim, so a runaway
    answer would otherwise hold the channel for minutes."""

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self.chars = 0
        self._said: set[str] = set()
        self.reason: str | None = None

    def allows(self, sentence: str) -> bool:
        key = _NOT_WORD.sub(" ", sentence.lower()).strip()
        if len(key) >= REPEAT_MIN_CHARS and key in self._said:
            self.reason = "the model repeated itself"
        elif self.max_chars and self.chars and self.chars + len(sentence) > self.max_chars:
            self.reason = f"max_reply_chars ({self.max_chars})"
        if self.reason is not None:
            return False
        self._said.add(key)
        self.chars += len(sentence)
        return True


class Reply:
    """One spoken reply: generation -> sentences -> synthesis -> a SpeechSource."""

    def __init__(self, trace: dict[str, float], *, released: bool = True) -> None:
        self.source = SpeechSource()
        self.sentences: list[str] = []
        self.errors: list[ProviderError] = []
        self.trace = trace
        # A preemptive reply is held (not played, only its first sentence synthesized)
        # until its turn really ends.
        self.released = asyncio.Event()
        if released:
            self.released.set()
        self.task: asyncio.Task[None] | None = None
        self.turn: Turn | None = None
        self.text = ""  # the transcript a preemptive reply answers

    def cancel(self) -> None:
        self.source.stop()
        if self.task is not None and not self.task.done():
            self.task.cancel()


class Player:
    """Speaks one server's replies in its voice channel."""

    def __init__(
        self,
        voice_client: Any,
        guild_id: int,
        control: PluginControl,
        warmup: Warmup,
        setting: Callable[[str], Any] = lambda key: 0,
    ) -> None:
        self.vc = voice_client
        self.setting = setting  # the session's live settings (read per reply)
        self.guild_id = guild_id
        self.control = control
        self.warmup = warmup
        self.loop = asyncio.get_running_loop()
        self.current: Reply | None = None  # the reply being spoken (released)
        self._playing: asyncio.Event | None = None  # set when the current playback ends

    @property
    def speaking(self) -> bool:
        reply = self.current
        return reply is not None and reply.released.is_set() and self.vc.is_playing()

    def start(
        self, deltas: AsyncIterator[str], trace: dict[str, float], *, released: bool = True
    ) -> Reply:
        """Start generating and synthesizing a reply from ``deltas`` (played once it is
        finished with :meth:`finish`; held until then when not ``released``)."""
        reply = Reply(trace, released=released)
        reply.task = asyncio.create_task(self._speak(deltas, reply))
        return reply

    async def finish(self, reply: Reply) -> tuple[str, ProviderError | None]:
        """Speak ``reply`` (releasing a held one); returns (what was said, the error that
        stopped it)."""
        assert reply.task is not None
        self.current = reply
        reply.released.set()
        if reply.source.pending_seconds:
            self._ensure_playing(reply)  # a preemptive reply has its first sentence ready
        try:
            await asyncio.wait([reply.task])  # returns when done or cancelled by stop()
            if not reply.task.cancelled() and reply.task.exception() is not None:
                raise reply.task.exception()
            if not reply.task.cancelled():
                await self._played_out()
        finally:
            self.current, self._playing = None, None
            reply.source.stop()
            if reply.source.first_frame_at is not None:
                reply.trace.setdefault("first_frame", reply.source.first_frame_at)
            if self.warmup.done_at is not None:  # also when this turn waited for it
                reply.trace.setdefault("warm_done", self.warmup.done_at)
            _mark(reply.trace, "reply_done")
            log.debug("guild %s voice turn stages: %s", self.guild_id, reply.trace)
        said = [
            reply.sentences[i]
            for i in sorted(reply.source.started_segments)
            if i < len(reply.sentences)
        ]
        return " ".join(said), (reply.errors[0] if reply.errors else None)

    def stop(self) -> None:
        """Stop talking now and cancel the rest of the current reply."""
        reply = self.current
        if reply is None:
            return
        _mark(reply.trace, "interrupted")
        reply.source.stop()
        if self.vc.is_playing():
            # VoiceRecvClient.stop() would also stop listening: stop the player only.
            self.vc.stop_playing()
        if reply.task is not None and not reply.task.done():
            reply.task.cancel()

    async def _speak(self, deltas: AsyncIterator[str], reply: Reply) -> None:
        source = reply.source
        synthesizer = self.control.provider_for(Capability.SYNTHESIZE, self.guild_id)
        if not isinstance(synthesizer, Synthesizer):
            reply.errors.append(
                ConfigurationError("I can't speak here: no synthesizer is enabled.")
            )
            return
        await self.warmup.wait_for(Capability.GENERATE, reply.trace)
        queue: asyncio.Queue[tuple[int, str] | None] = asyncio.Queue()
        synth = asyncio.create_task(self._synthesize(synthesizer, queue, reply))
        splitter = SentenceSplitter()
        sentences = reply.sentences
        limit = SpokenLimit(int(self.setting("max_reply_chars") or 0))

        def add(sentence: str) -> bool:
            if not limit.allows(sentence):
                return False
            _mark(reply.trace, "first_sentence")
            sentences.append(sentence)
            queue.put_nowait((len(sentences) - 1, sentence))
            return True

        try:
            stopped = False
            try:
                async for delta in deltas:
                    _mark(reply.trace, "first_delta")
                    if not all(add(s) for s in splitter.feed(delta)) or synth.done():
                        stopped = True  # cut short, or synthesis failed: stop generating
                        break
            except ProviderError as exc:
                reply.errors.append(exc)
            finally:
                aclose = getattr(deltas, "aclose", None)
                if aclose is not None:
                    await aclose()  # ends the LLM stream now, not at garbage collection
            if not stopped:
                for sentence in splitter.flush():
                    if not add(sentence):
                        break
            if limit.reason is not None:
                log.info(
                    "guild %s: spoken reply cut after %d characters: %s",
                    self.guild_id,
                    limit.chars,
                    limit.reason,
                )
            queue.put_nowait(None)
            await synth
        finally:
            if not synth.done():
                synth.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await synth
            source.close()

    async def _synthesize(
        self,
        synthesizer: Synthesizer,
        queue: asyncio.Queue[tuple[int, str] | None],
        reply: Reply,
    ) -> None:
        source = reply.source
        await self.warmup.wait_for(Capability.SYNTHESIZE, reply.trace)
        while (item := await queue.get()) is not None:
            index, text = item
            if index > 0:
                # A held (preemptive) reply synthesizes its first sentence only, so a
                # turn that goes on wastes little synthesis.
                await reply.released.wait()
            resampler: StreamResampler | None = None
            try:
                async for clip in synthesizer.synthesize(
                    text, guild_id=self.guild_id, channel_id=self._channel_id()
                ):
                    if resampler is None:
                        resampler = StreamResampler(
                            clip.sample_rate, clip.channels, DISCORD_RATE, DISCORD_CHANNELS
                        )
                    _mark(reply.trace, "first_audio")
                    source.add(resampler.feed(clip.pcm).pcm, index)
                    self._ensure_playing(reply)
                if resampler is not None:
                    source.add(resampler.flush().pcm, index)
            except ProviderError as exc:
                reply.errors.append(exc)
                return

    def _channel_id(self) -> int | None:
        # The voice channel: its channel-scoped settings (a voice per room) apply.
        return getattr(getattr(self.vc, "channel", None), "id", None)

    def _ensure_playing(self, reply: Reply) -> None:
        if (
            self._playing is None
            and reply is self.current
            and reply.released.is_set()
            and self.vc.is_connected()
        ):
            done = self._playing = asyncio.Event()

            def after(error: Exception | None) -> None:  # discord.py's player thread
                if error is not None:
                    log.warning("guild %s: playback failed: %s", self.guild_id, error)
                # The player thread can outlive the loop (the bot closed while the
                # last reply played): then nothing waits for this event any more.
                with contextlib.suppress(RuntimeError):
                    self.loop.call_soon_threadsafe(done.set)

            self.vc.play(reply.source, after=after)

    async def _played_out(self) -> None:
        """Wait until the queued audio has been played (or playback was stopped)."""
        if self._playing is not None:
            await self._playing.wait()
