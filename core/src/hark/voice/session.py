"""One server's voice session: listen per speaker, answer aloud, yield when interrupted.

Flow: voice-recv's router thread hands each speaker's 20 ms frames to a
:class:`~hark.voice.turns.TurnDetector`; finished utterances go to the event loop,
are transcribed by the server's Transcriber, and answered through the same
context + generator path as text (history of the linked text channel). The reply
is cut into sentences as it streams; each is synthesized and queued for playback
at once. One reply at a time per server; utterances that arrive meanwhile are
merged into the next turn. A listened-to user who speaks for ``barge_in_ms``
while the bot talks stops playback and cancels the rest of the reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord
from discord.ext import voice_recv

from hark.audio import DISCORD_CHANNELS, DISCORD_RATE, StreamResampler
from hark.chat.streaming import NO_PINGS
from hark.chat.triggers import callsign_pattern
from hark.providers import Capability, ContextRequest, Synthesizer, Transcriber
from hark.providers.errors import ConfigurationError, ProviderError
from hark.text import split_message
from hark.voice.playback import SpeechSource
from hark.voice.sentences import SentenceSplitter
from hark.voice.turns import TurnDetector, TurnSettings, Utterance

if TYPE_CHECKING:
    from hark.bot import HarkBot

log = logging.getLogger(__name__)

WATCHDOG_INTERVAL = 1.0
# More restarts than this in a minute: something is deeply wrong; stop and say so.
MAX_REVIVALS_PER_MINUTE = 5

VOICE_DEFAULTS: dict[str, Any] = {
    "answer": "all",  # "all" or "callsign"
    "transcripts": True,  # post what was heard and said in the linked text channel
    "aggressiveness": 2,
    "pre_roll_ms": 300,
    "min_speech_ms": 250,
    "silence_ms": 700,
    "max_utterance_ms": 15_000,
    "barge_in_ms": 400,
    "alone_timeout_s": 15.0,
}


@dataclass(slots=True)
class Heard:
    user_id: int
    name: str
    text: str


class _Sink(voice_recv.AudioSink):
    """Receives decoded PCM per speaker on voice-recv's router thread."""

    def __init__(self, session: VoiceSession) -> None:
        super().__init__()
        self.session = session

    def wants_opus(self) -> bool:
        return False

    def write(self, user: discord.abc.User | None, data: voice_recv.VoiceData) -> None:
        if user is None or user.bot or not data.pcm:
            return
        self.session.on_frame(user.id, data.pcm)

    def cleanup(self) -> None:
        pass


class VoiceSession:
    def __init__(self, bot: HarkBot, voice_client: Any, text_channel: Any, settings: Any) -> None:
        self.bot = bot
        self.vc = voice_client
        self.guild_id: int = voice_client.guild.id
        self.text_channel = text_channel
        self.settings = settings  # the voice plugin's PluginSettings
        self.loop = asyncio.get_running_loop()
        self.listening = False
        self._detectors: dict[int, TurnDetector] = {}
        self._detectors_lock = threading.Lock()
        self._pending: asyncio.Queue[Utterance] = asyncio.Queue()
        self._reply_lock = asyncio.Lock()
        self._source: SpeechSource | None = None
        self._reply_task: asyncio.Task[Any] | None = None
        self._playing: asyncio.Event | None = None  # set when the current playback ends
        self._tasks: list[asyncio.Task[Any]] = []
        self.interruptions = 0
        self._frame_error_logged = False
        # Each listen() gets a number, so a stale reader's end does not restart anything.
        self._generation = 0
        self._revivals: deque[float] = deque()
        self.interrupted_at: float | None = None
        # Monotonic timestamps of the latest turn's stages (for logs and bench/bench_voice.py):
        # utterance_end, transcribed, first_delta, first_sentence, first_audio, first_frame,
        # reply_done; and interrupted, when a barge-in happened.
        self.trace: dict[str, float] = {}

    # -- settings ----------------------------------------------------------

    def setting(self, key: str) -> Any:
        return self.settings.guild(self.guild_id).get(key)

    def turn_settings(self) -> TurnSettings:
        return TurnSettings(
            aggressiveness=int(self.setting("aggressiveness")),
            pre_roll_ms=int(self.setting("pre_roll_ms")),
            min_speech_ms=int(self.setting("min_speech_ms")),
            silence_ms=int(self.setting("silence_ms")),
            max_utterance_ms=int(self.setting("max_utterance_ms")),
        )

    # -- lifecycle -----------------------------------------------------------

    def start_listening(self) -> None:
        if self.listening:
            return
        with self._detectors_lock:
            self._detectors.clear()
        self._listen()
        self.listening = True
        self._revivals.clear()
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._poll_loop(), name=f"voice-poll-{self.guild_id}"),
                asyncio.create_task(self._worker(), name=f"voice-worker-{self.guild_id}"),
                asyncio.create_task(self._watchdog(), name=f"voice-watchdog-{self.guild_id}"),
            ]

    def _listen(self) -> None:
        self._generation += 1
        generation = self._generation

        def after(error: Exception | None) -> None:  # voice-recv's stopper thread
            self.loop.call_soon_threadsafe(self._listening_ended, generation, error)

        self.vc.listen(_Sink(self), after=after)

    def stop_listening(self) -> None:
        was_listening, self.listening = self.listening, False
        if was_listening:
            with contextlib.suppress(Exception):
                self.vc.stop_listening()
        # Half-heard and queued utterances are dropped: `stop` means stop.
        with self._detectors_lock:
            self._detectors.clear()
        while not self._pending.empty():
            self._pending.get_nowait()

    async def close(self) -> None:
        self.stop_listening()
        self.interrupt()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self.vc.is_connected():
            await self.vc.disconnect(force=True)

    # -- staying able to hear ----------------------------------------------------

    def _listening_ended(self, generation: int, error: Exception | None) -> None:
        if generation != self._generation or not self.listening or self._receiving():
            return  # stopped on purpose, or already replaced by a working receiver
        self._revive(f"voice-recv stopped ({type(error).__name__ if error else 'no error'})")

    async def _watchdog(self) -> None:
        """Catch a receiver that died without telling (a thread that ended)."""
        while True:
            await asyncio.sleep(WATCHDOG_INTERVAL)
            if not self.listening or not self.vc.is_connected():
                continue
            if not self._receiving():
                self._revive("the receiver stopped")

    def _receiving(self) -> bool:
        reader = getattr(self.vc, "reader", None)
        return bool(self.vc.is_listening()) and (reader is None or reader.packet_router.is_alive())

    def _revive(self, why: str) -> None:
        now = time.monotonic()
        while self._revivals and now - self._revivals[0] > 60:
            self._revivals.popleft()
        if len(self._revivals) >= MAX_REVIVALS_PER_MINUTE:
            log.error("guild %s: %s again; giving up listening", self.guild_id, why)
            self.stop_listening()
            task = asyncio.ensure_future(
                self.notice(
                    "I stopped hearing this voice channel and could not recover. "
                    "Use `listen` to try again."
                )
            )
            self._tasks.append(task)
            return
        self._revivals.append(now)
        log.warning("guild %s: %s; listening again", self.guild_id, why)
        with contextlib.suppress(Exception):
            self.vc.stop_listening()  # what is left of the old receiver
        try:
            self._listen()
        except discord.ClientException as exc:  # not connected right now: the watchdog retries
            log.warning("guild %s: could not listen again yet: %s", self.guild_id, exc)

    # -- receiving (router thread) ---------------------------------------------

    def on_frame(self, user_id: int, pcm: bytes) -> None:
        # Runs on voice-recv's router thread: an exception here would make voice-recv
        # stop listening for good, so nothing may escape.
        try:
            detector = self._detectors.get(user_id)
            if detector is None:
                with self._detectors_lock:
                    detector = self._detectors.setdefault(
                        user_id, TurnDetector(user_id, self.turn_settings())
                    )
            utterance = detector.feed(pcm)
        except Exception:
            if not self._frame_error_logged:
                self._frame_error_logged = True
                log.exception("guild %s: voice frame handling failed", self.guild_id)
            return
        if utterance is not None:
            self.loop.call_soon_threadsafe(self._pending.put_nowait, utterance)

    async def _poll_loop(self) -> None:
        """Idle timer for every speaker, and barge-in detection."""
        while True:
            await asyncio.sleep(0.05)
            barge_in_ms = int(self.setting("barge_in_ms"))
            for detector in list(self._detectors.values()):
                utterance = detector.poll()
                if utterance is not None:
                    self._pending.put_nowait(utterance)
                elif (
                    self.speaking
                    and detector.speaking
                    and detector.speech_ms >= barge_in_ms
                    and self.listening
                ):
                    log.info(
                        "guild %s: user %s interrupted the bot", self.guild_id, detector.user_id
                    )
                    self.interrupt()

    @property
    def speaking(self) -> bool:
        return self._source is not None and self.vc.is_playing()

    def interrupt(self) -> None:
        """Stop talking now and cancel the rest of the reply."""
        source, task = self._source, self._reply_task
        if source is None and task is None:
            return
        self.interruptions += 1
        self.interrupted_at = time.monotonic()
        self._mark("interrupted")
        if source is not None:
            source.stop()
        if self.vc.is_playing():
            # VoiceRecvClient.stop() would also stop listening: stop the player only.
            self.vc.stop_playing()
        if task is not None and not task.done():
            task.cancel()

    # -- turns -----------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            batch = [await self._pending.get()]
            while not self._pending.empty():
                batch.append(self._pending.get_nowait())
            if not self.listening or not self.bot.control.is_enabled("voice", self.guild_id):
                continue
            self.trace = {"utterance_end": batch[-1].ended}
            try:
                heard = await self._transcribe(batch)
                self._mark("transcribed")
                # Anything said while transcribing joins this turn rather than waiting.
                while not self._pending.empty():
                    heard += await self._transcribe([self._pending.get_nowait()])
                heard = self._addressed(heard)
                if heard:
                    await self._answer(heard)
            except Exception:  # a turn's failure never ends the session
                log.exception("guild %s: voice turn failed", self.guild_id)

    def _mark(self, stage: str) -> None:
        self.trace.setdefault(stage, time.monotonic())

    def _member_name(self, user_id: int) -> str:
        guild = self.vc.guild
        member = guild.get_member(user_id) if guild else None
        return member.display_name if member else str(user_id)

    async def _transcribe(self, batch: list[Utterance]) -> list[Heard]:
        transcriber = self.bot.control.provider_for(Capability.TRANSCRIBE, self.guild_id)
        if not isinstance(transcriber, Transcriber):
            await self.notice("I can't understand speech here: no transcriber is enabled.")
            return []
        names = [m.display_name for m in getattr(self.vc.channel, "members", []) if not m.bot]
        prompt = ", ".join(names) + "." if names else None
        heard: list[Heard] = []
        for utterance in batch:
            try:
                transcript = await transcriber.transcribe(
                    utterance.clip, prompt=prompt, guild_id=self.guild_id
                )
            except ProviderError as exc:
                await self.notice(exc.user_message)
                continue
            text = transcript.text.strip()
            if text and any(ch.isalnum() for ch in text):
                heard.append(Heard(utterance.user_id, self._member_name(utterance.user_id), text))
        return heard

    def _addressed(self, heard: list[Heard]) -> list[Heard]:
        if self.setting("answer") != "callsign":
            return heard
        me = self.vc.guild.me if self.vc.guild else self.bot.user
        chat = self.bot.get_cog("Chat")
        names = chat.triggers.names_for(me) if chat is not None else [me.name]
        pattern = callsign_pattern(names)
        return [h for h in heard if pattern is not None and pattern.search(h.text)]

    async def _answer(self, heard: list[Heard]) -> None:
        if self.setting("transcripts"):
            for h in heard:
                await self.post(f"🎙️ **{h.name}**: {h.text}")
        if len(heard) == 1:
            text, user_id, user_name = heard[0].text, heard[0].user_id, heard[0].name
        else:  # several people spoke while the bot was busy: one turn, names kept
            text = "\n".join(f"{h.name}: {h.text}" for h in heard)
            user_id, user_name = heard[-1].user_id, None
        me = self.vc.guild.me
        request = ContextRequest(
            text=text,
            guild_id=self.guild_id,
            channel_id=self.text_channel.id if self.text_channel else self.vc.channel.id,
            user_id=user_id,
            user_name=user_name,
            bot_name=me.display_name if me else None,
            kind="voice",
        )
        conversation = self.bot.runtime.conversation
        async with self._reply_lock:
            try:
                turn = await conversation.prepare(request)
            except ProviderError as exc:
                await self.notice(exc.user_message)
                return
            spoken, error = await self._run_reply(turn.stream())
            # Like text, a failed turn is not recorded; a barge-in is not a failure.
            if spoken.strip() and error is None:
                # Only what was actually said goes to history (a barge-in cuts it short).
                await conversation.record(turn, spoken)
                if self.setting("transcripts"):
                    for part in split_message(f"🔊 {spoken}"):
                        await self.post(part)
            if error is not None:
                await self.notice(error.user_message)

    async def say(self, text: str) -> bool:
        """Speak ``text`` (no LLM): used by plugins, e.g. Twitch commentary."""

        async def once() -> AsyncIterator[str]:
            yield text

        async with self._reply_lock:
            self.trace = {}
            spoken, error = await self._run_reply(once())
        if error is not None:
            await self.notice(error.user_message)
        return bool(spoken)

    async def _run_reply(self, deltas: AsyncIterator[str]) -> tuple[str, ProviderError | None]:
        """Speak a streamed reply; returns (what was said, the error that stopped it)."""
        source = SpeechSource()
        sentences: list[str] = []
        errors: list[ProviderError] = []
        self._source = source
        self._reply_task = task = asyncio.create_task(
            self._speak(deltas, source, sentences, errors)
        )
        try:
            await asyncio.wait([task])  # returns when done or cancelled by interrupt()
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()
            if not task.cancelled():
                await self._played_out(source)
        finally:
            self._source, self._reply_task, self._playing = None, None, None
            source.stop()
            if source.first_frame_at is not None:
                self.trace.setdefault("first_frame", source.first_frame_at)
            self._mark("reply_done")
            log.debug("guild %s voice turn stages: %s", self.guild_id, self.trace)
        said = [sentences[i] for i in sorted(source.started_segments) if i < len(sentences)]
        return " ".join(said), (errors[0] if errors else None)

    async def _speak(
        self,
        deltas: AsyncIterator[str],
        source: SpeechSource,
        sentences: list[str],
        errors: list[ProviderError],
    ) -> None:
        synthesizer = self.bot.control.provider_for(Capability.SYNTHESIZE, self.guild_id)
        if not isinstance(synthesizer, Synthesizer):
            errors.append(ConfigurationError("I can't speak here: no synthesizer is enabled."))
            return
        queue: asyncio.Queue[tuple[int, str] | None] = asyncio.Queue()
        synth = asyncio.create_task(self._synthesize(synthesizer, queue, source, errors))
        splitter = SentenceSplitter()
        try:
            try:
                async for delta in deltas:
                    self._mark("first_delta")
                    for sentence in splitter.feed(delta):
                        self._mark("first_sentence")
                        sentences.append(sentence)
                        queue.put_nowait((len(sentences) - 1, sentence))
                    if synth.done():
                        break  # synthesis failed: stop generating
            except ProviderError as exc:
                errors.append(exc)
            for sentence in splitter.flush():
                sentences.append(sentence)
                queue.put_nowait((len(sentences) - 1, sentence))
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
        source: SpeechSource,
        errors: list[ProviderError],
    ) -> None:
        while (item := await queue.get()) is not None:
            index, text = item
            resampler: StreamResampler | None = None
            try:
                async for clip in synthesizer.synthesize(text, guild_id=self.guild_id):
                    if resampler is None:
                        resampler = StreamResampler(
                            clip.sample_rate, clip.channels, DISCORD_RATE, DISCORD_CHANNELS
                        )
                    self._mark("first_audio")
                    source.add(resampler.feed(clip.pcm).pcm, index)
                    self._ensure_playing(source)
                if resampler is not None:
                    source.add(resampler.flush().pcm, index)
            except ProviderError as exc:
                errors.append(exc)
                return

    def _ensure_playing(self, source: SpeechSource) -> None:
        if self._playing is None and self.vc.is_connected() and source is self._source:
            done = self._playing = asyncio.Event()

            def after(error: Exception | None) -> None:  # discord.py's player thread
                if error is not None:
                    log.warning("guild %s: playback failed: %s", self.guild_id, error)
                self.loop.call_soon_threadsafe(done.set)

            self.vc.play(source, after=after)

    async def _played_out(self, source: SpeechSource) -> None:
        """Wait until the queued audio has been played (or playback was stopped)."""
        if self._playing is not None:
            await self._playing.wait()

    # -- text channel ---------------------------------------------------------

    async def post(self, text: str) -> None:
        if self.text_channel is None:
            return
        with contextlib.suppress(discord.HTTPException):
            await self.text_channel.send(text[:2000], allowed_mentions=NO_PINGS)

    async def notice(self, text: str) -> None:
        log.info("guild %s voice notice: %s", self.guild_id, text)
        await self.post(text)
