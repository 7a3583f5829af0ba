"""One server's voice session: listen per speaker, answer aloud, yield when interrupted.

Flow: voice-recv's router thread feeds each speaker's 20 ms frames to a
:class:`~hark.providers.turns.SpeakerTurns` opened from the server's turn detector
(``!plugins use turn ID``; the built-in webrtcvad one if none is chosen or it fails
to open). What it reports is handled on the event loop:

- ``pause`` (a short trailing silence) starts a *speculative* transcription, so
  speech-to-text overlaps the wait for the end of the turn; ``resumed`` discards
  it; ``end`` reuses it when the speaker said nothing more. With ``preemptive`` on,
  the reply is also generated (and its first sentence synthesized) from the
  speculative transcript, held until the turn really ends, cancelled if it does not.
- ``end`` queues the turn; the worker answers through the same context + generator
  path as text (history of the linked text channel). The reply is cut into
  sentences as it streams; each is synthesized and queued for playback at once.
  One reply at a time per server; turns that end meanwhile are merged into the next.
- Barge-in, in two steps: a listened-to member who starts speaking while the bot
  talks pauses playback at once (the next 20 ms frame is silence). An interruption
  with ``barge_in_ms`` of speech and words (from the speculative transcript)
  cancels the rest of the reply; a shorter one, or one with no words (a cough,
  "mm-hm"), resumes playback where it paused and never becomes a turn.

Nothing on a turn's path waits for Discord's REST API: transcripts, replies and
notices go through one ordered queue per session, posted in the background.
The server's providers are warmed (model loaded, connection open) when the session
starts and at ``listen``; the stage trace records whether a turn had to wait.

This module holds the session itself: its lifecycle, staying able to hear, the
turn detectors, turn updates and answering turns. The parts it owns live beside it:

- :mod:`hark.voice.speakers`: each speaker's state (utterance under way, pending turn);
- :mod:`hark.voice.barge_in`: the two barge-in steps, and the word/filler helpers;
- :mod:`hark.voice.reply`: speaking a reply (sentences, synthesis, playback);
- :mod:`hark.voice.posts`: the ordered queue of posts in the linked channel;
- :mod:`hark.voice.warmup`: warming the server's providers.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord
from discord.ext import voice_recv

from hark.audio import DISCORD_CHANNELS, DISCORD_RATE, rms
from hark.chat.triggers import callsign_pattern
from hark.cog import permission_names
from hark.providers import (
    AudioClip,
    Capability,
    ContextRequest,
    Transcriber,
    Transcript,
    TurnDetector,
)
from hark.providers.errors import ConfigurationError, ProviderError
from hark.providers.turns import TurnUpdate, Utterance
from hark.text import split_message
from hark.voice.barge_in import FILLERS, BargeIn, has_words, is_filler, transcript_ok
from hark.voice.posts import POST_FLUSH_TIMEOUT, PostQueue
from hark.voice.reply import Player, Reply
from hark.voice.speakers import PendingTurn, Speaker, TranscriptResult, UtteranceState
from hark.voice.turns import TurnSettings, WebRTCTurnDetector
from hark.voice.warmup import (
    WARM_TIMEOUT,
    WARM_WAIT,
    WARMED,
    Priming,
    Warmup,
    warm_guild,
    warm_provider,
)

if TYPE_CHECKING:
    from hark.bot import HarkBot

__all__ = [
    "FILLERS",
    "POST_FLUSH_TIMEOUT",
    "VOICE_DEFAULTS",
    "WARMED",
    "WARM_TIMEOUT",
    "WARM_WAIT",
    "Heard",
    "TranscriptResult",
    "TurnSettings",
    "VoiceSession",
    "has_words",
    "is_filler",
    "warm_guild",
    "warm_provider",
]

log = logging.getLogger(__name__)

WATCHDOG_INTERVAL = 1.0
POLL_INTERVAL = 0.05
# More restarts than this in a minute: something is deeply wrong; stop and say so.
MAX_REVIVALS_PER_MINUTE = 5

VOICE_DEFAULTS: dict[str, Any] = {
    "answer": "all",  # "all" or "callsign"
    "transcripts": True,  # post what was heard and said in the linked text channel
    "aggressiveness": 2,
    "pre_roll_ms": 300,
    "min_speech_ms": 250,
    "pause_ms": 200,  # trailing silence that starts speculative transcription (0: off)
    "silence_ms": 700,
    "max_utterance_ms": 15_000,
    "barge_in_pause_ms": 0,  # speech over the bot that pauses it (0: at speech start)
    # A louder frame than this (RMS, 0..32767) over the bot pauses it before the detector
    # has heard speech (0: wait for the detector); the pause ends after
    # barge_in_onset_ms unless the detector then hears speech.
    "barge_in_onset_rms": 600,
    "barge_in_onset_ms": 300,
    "barge_in_ms": 400,  # speech (with words) over the bot that cancels the reply
    # A spoken reply ends at the sentence that would pass this (0: no cap), or at a
    # long sentence said twice: nobody listens to a five-minute answer.
    "max_reply_chars": 1200,
    "preemptive": False,  # generate from the speculative transcript (costs LLM calls)
    "min_speech_probability": 0.5,  # detectors that report one: below it, not speech
    "min_confidence": 0.2,  # transcribers that report one: below it, not speech
    "alone_timeout_s": 15.0,
}

_FALLBACK_DETECTOR = WebRTCTurnDetector()


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
        # Each speaker heard so far (added on the router thread, under the lock).
        self.speakers: dict[int, Speaker] = {}
        self._speakers_lock = threading.Lock()
        self._pending: asyncio.Queue[PendingTurn] = asyncio.Queue()
        self._reply_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[Any]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self.posts = PostQueue(self.guild_id)
        self.warmup = Warmup(bot.control, self.guild_id, prompt=self._priming)
        self.player = Player(
            voice_client, self.guild_id, bot.control, self.warmup, setting=self.setting
        )
        self.barge_in = BargeIn(self)
        self._frame_error_logged = False
        self._open_failed: set[str] = set()
        # Each listen() gets a number, so a stale reader's end does not restart anything.
        self._generation = 0
        self._revivals: deque[float] = deque()
        self.interruptions = 0
        self.interrupted_at: float | None = None
        # What happened, for tests, logs and bench/bench_voice.py: speculative_used,
        # speculative_discarded, preemptive_used, preemptive_discarded,
        # false_interruptions, not_speech (utterances/transcripts dropped as non-speech).
        self.counts: collections.Counter[str] = collections.Counter()
        # Monotonic timestamps of the latest turn's stages (for logs and the benchmark):
        # speech_start, turn_pause, speculative_transcribed, utterance_end / turn_end
        # (the detector's decision), warm_done (when the session's warm-up finished),
        # warm_waited (only if this turn had to wait for it), transcribed, first_delta,
        # first_sentence, first_audio, first_frame, reply_done; and paused_at,
        # resumed_at, interrupted when someone talked over the reply.
        self.trace: dict[str, float] = {}

    # -- settings ----------------------------------------------------------

    def setting(self, key: str) -> Any:
        return self.settings.guild(self.guild_id).get(key)

    def turn_settings(self) -> TurnSettings:
        return TurnSettings.from_settings(self.settings.guild(self.guild_id).all())

    # -- lifecycle -----------------------------------------------------------

    def start_listening(self) -> None:
        if self.listening:
            return
        self._open_failed.clear()  # a detector that failed may work now: try it again
        self._clear_speakers()
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
            # The thread can outlive the loop (the bot closed): nobody is listening then.
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self._listening_ended, generation, error)

        self.vc.listen(_Sink(self), after=after)

    def stop_listening(self) -> None:
        was_listening, self.listening = self.listening, False
        if was_listening:
            with contextlib.suppress(Exception):
                self.vc.stop_listening()
        # Half-heard and queued utterances are dropped: `stop` means stop.
        self._clear_speakers()
        while not self._pending.empty():
            self.discard(self._pending.get_nowait())

    def _clear_speakers(self) -> None:
        with self._speakers_lock:
            speakers, self.speakers = list(self.speakers.values()), {}
        for speaker in speakers:
            self._forget(speaker.utt)
            self.barge_in.release(speaker)

    async def close(self) -> None:
        self.stop_listening()
        self.interrupt()
        self.warmup.cancel()
        for task in self._background:
            task.cancel()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        await self.posts.close()
        if self.vc.is_connected():
            await self.vc.disconnect(force=True)

    # -- warm-up -------------------------------------------------------------------

    def start_warm(self) -> None:
        """Warm this server's turn detector, transcriber, generator and synthesizer in
        the background (at `join` and `listen`), so the first turn is as fast as the next."""
        self.warmup.start()

    @property
    def warm_done_at(self) -> float | None:
        """When the latest warm-up finished (monotonic), if one did."""
        return self.warmup.done_at

    # -- staying able to hear ----------------------------------------------------

    def _listening_ended(self, generation: int, error: Exception | None) -> None:
        if generation != self._generation or not self.listening or self._receiving():
            return  # stopped on purpose, or already replaced by a working receiver
        self._revive(f"voice-recv stopped ({type(error).__name__ if error else 'no error'})")

    async def _watchdog(self) -> None:
        """Catch a receiver that died without telling (a thread that ended), and move
        idle speakers to the server's current turn detector after `!plugins use turn`."""
        while True:
            await asyncio.sleep(WATCHDOG_INTERVAL)
            if not self.listening or not self.vc.is_connected():
                continue
            if not self._receiving():
                self._revive("the receiver stopped")
            self._follow_detector_choice()

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
            self.post_later(
                "I stopped hearing this voice channel and could not recover. "
                "Use `listen` to try again."
            )
            return
        self._revivals.append(now)
        log.warning("guild %s: %s; listening again", self.guild_id, why)
        with contextlib.suppress(Exception):
            self.vc.stop_listening()  # what is left of the old receiver
        try:
            self._listen()
        except discord.ClientException as exc:  # not connected right now: the watchdog retries
            log.warning("guild %s: could not listen again yet: %s", self.guild_id, exc)

    # -- turn detectors ------------------------------------------------------------

    def detector(self) -> TurnDetector:
        """This server's turn detector: its choice, else the best enabled, else built-in."""
        chosen = self.bot.control.provider_for(Capability.TURN, self.guild_id)
        return chosen if isinstance(chosen, TurnDetector) else self._builtin_detector()

    def _builtin_detector(self) -> TurnDetector:
        info = self.bot.runtime.manager.get("voice")
        for provider in info.providers if info is not None else ():
            if isinstance(provider, WebRTCTurnDetector):
                return provider
        return _FALLBACK_DETECTOR

    @property
    def detectors(self) -> dict[int, str]:
        """Which detector (provider id) each speaker heard so far uses."""
        return {uid: speaker.detector_id for uid, speaker in self.speakers.items()}

    def _open_speaker(self, user_id: int) -> Speaker:
        """A speaker's turn state from the server's detector (may run on the router thread)."""
        settings = self.settings.guild(self.guild_id).all()
        detector = self.detector()
        try:
            turns = detector.open(user_id, guild_id=self.guild_id, **settings)
        except Exception as exc:
            builtin = self._builtin_detector()
            if detector is builtin:
                raise
            if detector.id not in self._open_failed:
                self._open_failed.add(detector.id)
                log.warning(
                    "guild %s: turn detector %s failed to open (%r); using %s",
                    self.guild_id,
                    detector.id,
                    exc,
                    builtin.id,
                )
                self.loop.call_soon_threadsafe(
                    self.post_later,
                    f"The turn detector `{detector.id}` failed, so I'm using `{builtin.id}`.",
                )
            detector, turns = builtin, builtin.open(user_id, guild_id=self.guild_id, **settings)
        return Speaker(user_id, turns, detector.id)

    def _follow_detector_choice(self) -> None:
        current = self.detector().id
        if current in self._open_failed:
            return  # it fails to open: speakers stay on the built-in one
        for user_id, speaker in list(self.speakers.items()):
            if speaker.detector_id == current or speaker.turns.speaking or speaker.holding:
                continue
            replacement = self._open_speaker(user_id)
            with self._speakers_lock:
                if self.speakers.get(user_id) is speaker:
                    self.speakers[user_id] = replacement
                    self._forget(speaker.utt)

    # -- receiving (router thread) ---------------------------------------------

    def on_frame(self, user_id: int, pcm: bytes) -> None:
        # Runs on voice-recv's router thread: an exception here would make voice-recv
        # stop listening for good, so nothing may escape. The decisions are made on
        # the event loop; this thread only runs the detector.
        try:
            speaker = self.speakers.get(user_id)
            if speaker is None:
                with self._speakers_lock:
                    speaker = self.speakers.get(user_id)
                    if speaker is None:
                        speaker = self.speakers[user_id] = self._open_speaker(user_id)
            update = speaker.turns.feed(pcm)
            # Loudness matters only while the bot talks (barge-in's onset): skip it otherwise.
            level = rms(AudioClip(pcm, DISCORD_RATE, DISCORD_CHANNELS)) if self.speaking else 0.0
            # Every frame goes to the loop, not only updates: barge-in watches speech_ms
            # grow while the bot talks (50 wake-ups a second per speaker: cheap).
            self.loop.call_soon_threadsafe(
                self._on_feed, speaker, update, speaker.turns.speech_ms, level
            )
        except Exception:
            if not self._frame_error_logged:
                self._frame_error_logged = True
                log.exception("guild %s: voice frame handling failed", self.guild_id)

    # -- turn updates (event loop) ------------------------------------------------

    def _on_feed(
        self, speaker: Speaker, update: TurnUpdate | None, speech_ms: int, level: float
    ) -> None:
        if self.speakers.get(speaker.user_id) is not speaker or not self.listening:
            return  # a stale state (stop, or another detector chosen since)
        if update is not None:
            self._on_update(speaker, update)
        started = update is not None and update.kind in ("speech", "resumed")
        self.barge_in.onset(speaker, level)
        self.barge_in.watch(speaker, speech_ms, started=started)

    async def _poll_loop(self) -> None:
        """Every speaker's timers (Discord sends nothing while someone is silent)."""
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            for speaker in list(self.speakers.values()):
                try:
                    update = speaker.turns.poll()
                except Exception:
                    log.exception("guild %s: turn detector poll failed", self.guild_id)
                    continue
                if update is not None:
                    self._on_update(speaker, update)
                if (
                    speaker.holding
                    and not speaker.turns.speaking
                    and not speaker.judging
                    and not self.barge_in.onset_pending(speaker)
                ):
                    # Nothing left to decide on (a reset, a detector that went quiet, a
                    # loud sound the detector did not take for speech).
                    self.barge_in.release(speaker)

    def _on_update(self, speaker: Speaker, update: TurnUpdate) -> None:
        try:
            handler = {
                "speech": self._on_speech,
                "pause": self._on_pause,
                "resumed": self._on_resumed,
                "end": self._on_end,
                "dropped": self._on_dropped,
            }.get(update.kind)
            if handler is not None:
                handler(speaker, update)
        except Exception:
            log.exception("guild %s: handling %s failed", self.guild_id, update.kind)

    def _on_speech(self, speaker: Speaker, update: TurnUpdate) -> None:
        speaker.utt.stages.setdefault("speech_start", time.monotonic())

    def _on_pause(self, speaker: Speaker, update: TurnUpdate) -> None:
        utterance = update.utterance
        if utterance is None:
            return
        utt = speaker.utt
        self._drop_speculation(utt, count=False)
        utt.stages["turn_pause"] = time.monotonic()
        over_bot = utt.over_from is not None and not utt.confirmed
        if over_bot and utterance.speech_ms - utt.over_from < int(self.setting("barge_in_ms")):
            # Too short to interrupt so far: play on (a new burst pauses again).
            self.barge_in.release(speaker)
            return
        if int(self.setting("pause_ms")) == 0 or not self._speechlike(utterance):
            return
        if utterance.speech_ms < int(self.setting("min_speech_ms")):
            return  # would be dropped unless the speaker goes on
        task = asyncio.create_task(self._transcription(utterance, utt.stages, speculative=True))
        utt.speculative, utt.speculative_speech_ms = task, utterance.speech_ms
        if over_bot:
            speaker.judging = True
            task.add_done_callback(lambda t: self.barge_in.judge_at_pause(speaker, utt, t))
        elif self.setting("preemptive"):
            self._spawn(self._preempt(speaker, utt, utterance, task))

    def _on_resumed(self, speaker: Speaker, update: TurnUpdate) -> None:
        self._drop_speculation(speaker.utt, count=True)

    def _on_end(self, speaker: Speaker, update: TurnUpdate) -> None:
        utterance = update.utterance
        utt, speaker.utt = speaker.utt, UtteranceState()
        speaker.seen_ms = 0
        if utterance is None:
            self._forget(utt)
            return
        utt.stages["turn_end"] = time.monotonic()
        utt.stages["utterance_end"] = utterance.ended
        if not self._speechlike(utterance):
            self.counts["not_speech"] += 1
            self._forget(utt)
            self.barge_in.release(speaker)
            return
        over_bot = utt.over_from is not None and not utt.confirmed
        if over_bot and utterance.speech_ms - utt.over_from < int(self.setting("barge_in_ms")):
            log.info("guild %s: user %s: a false interruption", self.guild_id, speaker.user_id)
            self.counts["false_interruptions"] += 1
            self._forget(utt)
            self.barge_in.release(speaker)
            return
        task = utt.speculative
        # Reused only if nothing was said after the pause (a detector sends `resumed`;
        # more voiced audio is a second guard).
        if task is not None and utterance.speech_ms <= utt.speculative_speech_ms:
            self.counts["speculative_used"] += 1
        else:
            self._drop_speculation(utt, count=True)
            task = asyncio.create_task(self._transcription(utterance, utt.stages))
        pending = PendingTurn(utterance, task, utt.stages, utt.preemptive)
        if over_bot:
            speaker.judging = True
            self._spawn(self.barge_in.judge_at_end(speaker, pending))
        else:
            self.queue_turn(pending)

    def _on_dropped(self, speaker: Speaker, update: TurnUpdate) -> None:
        utt, speaker.utt = speaker.utt, UtteranceState()
        speaker.seen_ms = 0
        if utt.over_from is not None and not utt.confirmed:
            self.counts["false_interruptions"] += 1
        self._drop_speculation(utt, count=True)
        self.barge_in.release(speaker)

    def _speechlike(self, utterance: Utterance) -> bool:
        probability = utterance.speech_probability
        return probability is None or probability >= float(self.setting("min_speech_probability"))

    def _transcript_ok(self, transcript: Transcript) -> bool:
        return transcript_ok(transcript, float(self.setting("min_confidence")))

    def _drop_speculation(self, utt: UtteranceState, *, count: bool) -> None:
        if utt.speculative is not None:
            if count:
                self.counts["speculative_discarded"] += 1
            utt.speculative.cancel()
            utt.speculative = None
            # The trace is the final transcription's: a wait for the warm-up that only
            # the dropped speculation did is not this turn's.
            for stage in ("speculative_transcribed", "turn_pause", "warm_waited"):
                utt.stages.pop(stage, None)
        if utt.preemptive is not None:
            self.counts["preemptive_discarded"] += 1
            utt.preemptive.cancel()
            utt.preemptive = None

    def _forget(self, utt: UtteranceState) -> None:
        self._drop_speculation(utt, count=False)

    def queue_turn(self, pending: PendingTurn) -> None:
        """Hand a finished utterance to the worker, to be answered."""
        self._pending.put_nowait(pending)

    def discard(self, pending: PendingTurn) -> None:
        """Drop a turn that will not be answered: its transcription, any preemptive reply."""
        pending.transcript.cancel()
        if pending.preemptive is not None:
            self.counts["preemptive_discarded"] += 1
            pending.preemptive.cancel()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def encryption(self) -> Any:
        """This call's end-to-end encryption (hark.voice.dave.Encryption), for `!voice`
        and the dashboard."""
        from hark.voice.dave import encryption_of

        return encryption_of(getattr(self.vc, "_connection", None))

    # -- speaking and barge-in ------------------------------------------------------

    @property
    def speaking(self) -> bool:
        return self.player.speaking

    def interrupt(self) -> None:
        """Stop talking now and cancel the rest of the reply."""
        if self.player.current is None:
            return
        self.interruptions += 1
        self.interrupted_at = time.monotonic()
        self.player.stop()

    async def _finish_reply(self, reply: Reply) -> tuple[str, ProviderError | None]:
        """Speak ``reply`` (see :meth:`~hark.voice.reply.Player.finish`); once it is over,
        nobody holds it paused."""
        try:
            return await self.player.finish(reply)
        finally:
            self.barge_in.reply_ended()

    # -- turns -----------------------------------------------------------------

    async def _transcription(
        self, utterance: Utterance, stages: dict[str, float], *, speculative: bool = False
    ) -> TranscriptResult:
        await self.warmup.wait_for(Capability.TRANSCRIBE, stages)
        transcriber = self.bot.control.provider_for(Capability.TRANSCRIBE, self.guild_id)
        if not isinstance(transcriber, Transcriber):
            return ConfigurationError("I can't understand speech here: no transcriber is enabled.")
        names = [m.display_name for m in getattr(self.vc.channel, "members", []) if not m.bot]
        prompt = ", ".join(names) + "." if names else None
        try:
            transcript = await transcriber.transcribe(
                utterance.clip,
                prompt=prompt,
                guild_id=self.guild_id,
                channel_id=getattr(self.vc.channel, "id", None),
            )
        except ProviderError as exc:
            return exc
        if speculative:
            stages["speculative_transcribed"] = time.monotonic()
        return transcript

    async def _worker(self) -> None:
        while True:
            batch = [await self._pending.get()]
            while not self._pending.empty():
                batch.append(self._pending.get_nowait())
            if not self.listening or not self.bot.control.is_enabled("voice", self.guild_id):
                for pending in batch:
                    self.discard(pending)
                continue
            self.trace = batch[-1].stages
            if self.warmup.done_at is not None:
                self.trace.setdefault("warm_done", self.warmup.done_at)
            try:
                heard = await self._heard(batch)
                self.trace.setdefault("transcribed", time.monotonic())
                # Anything said while transcribing joins this turn rather than waiting.
                while not self._pending.empty():
                    more = self._pending.get_nowait()
                    batch.append(more)
                    heard += await self._heard([more])
                heard = self._addressed(heard)
                preemptive = self._usable_preemption(batch, heard)
                for pending in batch:
                    if pending.preemptive is not None and pending.preemptive is not preemptive:
                        self._discard_preemption(pending)
                if heard:
                    await self._answer(heard, preemptive)
            except Exception:  # a turn's failure never ends the session
                log.exception("guild %s: voice turn failed", self.guild_id)
                for pending in batch:
                    self._discard_preemption(pending)

    def _discard_preemption(self, pending: PendingTurn) -> None:
        if pending.preemptive is not None:
            self.counts["preemptive_discarded"] += 1
            pending.preemptive.cancel()
            pending.preemptive = None

    @staticmethod
    def _usable_preemption(batch: list[PendingTurn], heard: list[Heard]) -> Reply | None:
        if len(batch) != 1 or len(heard) != 1:
            return None
        reply = batch[0].preemptive
        if reply is None or reply.text != heard[0].text or reply.task is None:
            return None
        if reply.task.done() and (reply.task.cancelled() or reply.errors):
            return None
        return reply

    def _member_name(self, user_id: int) -> str:
        guild = self.vc.guild
        member = guild.get_member(user_id) if guild else None
        return member.display_name if member else str(user_id)

    async def _heard(self, batch: Iterable[PendingTurn]) -> list[Heard]:
        heard: list[Heard] = []
        for pending in batch:
            task = pending.transcript
            await asyncio.wait([task])
            if task.cancelled():
                continue
            result = task.result()
            if isinstance(result, ProviderError):
                self.post_later(result.user_message)
                continue
            if not has_words(result.text.strip()):
                continue
            if not self._transcript_ok(result):
                log.info(
                    "guild %s: dropped %r (confidence %.2f): not speech",
                    self.guild_id,
                    result.text,
                    result.confidence or 0.0,
                )
                self.counts["not_speech"] += 1
                continue
            user_id = pending.utterance.user_id
            heard.append(Heard(user_id, self._member_name(user_id), result.text.strip()))
        return heard

    def _addressed(self, heard: list[Heard]) -> list[Heard]:
        if self.setting("answer") != "callsign":
            return heard
        me = self.vc.guild.me if self.vc.guild else self.bot.user
        chat = self.bot.chat
        names = chat.triggers.names_for(me) if chat is not None else [me.name]
        pattern = callsign_pattern(names)
        return [h for h in heard if pattern is not None and pattern.search(h.text)]

    def _request(self, heard: list[Heard]) -> ContextRequest:
        if len(heard) == 1:
            text, user_id, user_name = heard[0].text, heard[0].user_id, heard[0].name
        else:  # several people spoke while the bot was busy: one turn, names kept
            text = "\n".join(f"{h.name}: {h.text}" for h in heard)
            user_id, user_name = heard[-1].user_id, None
        me = self.vc.guild.me
        return ContextRequest(
            text=text,
            guild_id=self.guild_id,
            channel_id=self.text_channel.id if self.text_channel else self.vc.channel.id,
            user_id=user_id,
            user_name=user_name,
            bot_name=me.display_name if me else None,
            kind="voice",
            permissions=self._permissions(heard),
        )

    async def _priming(self) -> Priming | None:
        """How a turn here begins (persona, history, the tools offered), so the
        generator can evaluate it before the first question (Generator.prime)."""
        me = self.vc.guild.me
        request = ContextRequest(
            text="",
            guild_id=self.guild_id,
            channel_id=self.text_channel.id if self.text_channel else self.vc.channel.id,
            bot_name=me.display_name if me else None,
            kind="voice",
        )
        turn = await self.bot.runtime.conversation.prepare(request)
        messages = turn.prompt.messages[:-1]  # without the (empty) question
        return Priming(messages, tools=[tool.spec() for tool in turn.tools])

    def _permissions(self, heard: list[Heard]) -> frozenset[str] | None:
        """What every speaker of the turn holds in the voice channel (a tool acts for
        all of them), or None when one of them is no longer a member."""
        guild = self.vc.guild
        held: frozenset[str] | None = None
        for h in heard:
            member = guild.get_member(h.user_id) if guild else None
            if member is None:
                return None
            mine = permission_names(member, self.vc.channel)
            held = mine if held is None else held & mine
        return held

    async def _preempt(
        self,
        speaker: Speaker,
        utt: UtteranceState,
        utterance: Utterance,
        task: asyncio.Task[TranscriptResult],
    ) -> None:
        """Preemptive generation: start the reply from a speculative transcript, held
        (not played) until the turn ends; cancelled if the speaker goes on."""
        await asyncio.wait([task])
        if utt.speculative is not task or task.cancelled():
            return
        result = task.result()
        if not isinstance(result, Transcript) or not self._transcript_ok(result):
            return
        heard = self._addressed(
            [Heard(utterance.user_id, self._member_name(utterance.user_id), result.text.strip())]
        )
        # Only when the bot is free: otherwise this turn will be merged with others.
        if not heard or self._reply_lock.locked() or not self._pending.empty():
            return
        try:
            turn = await self.bot.runtime.conversation.prepare(self._request(heard))
        except ProviderError:
            return  # the turn itself will try again and say what went wrong
        if utt.speculative is not task or speaker.utt is not utt:
            return  # the speaker went on (or the turn ended and was handled) meanwhile
        reply = self.player.start(turn.stream(), utt.stages, released=False)
        # Its tools wait for the turn to be confirmed: a discarded guess acts on nothing.
        turn.before_tools = reply.released.wait
        reply.turn, reply.text = turn, heard[0].text
        utt.preemptive = reply
        self.counts["preemptive_started"] += 1

    async def _answer(self, heard: list[Heard], preemptive: Reply | None = None) -> None:
        if self.setting("transcripts"):
            for h in heard:
                self.post_later(f"🎙️ **{h.name}**: {h.text}")
        conversation = self.bot.runtime.conversation
        async with self._reply_lock:
            if preemptive is not None and preemptive.turn is not None:
                self.counts["preemptive_used"] += 1
                turn, reply = preemptive.turn, preemptive
            else:
                request = self._request(heard)
                try:
                    turn = await conversation.prepare(request)
                except ProviderError as exc:
                    conversation.metrics.voice_turn(request, self.trace, "failed", error=str(exc))
                    self.post_later(exc.user_message)
                    return
                reply = self.player.start(turn.stream(), self.trace)
            spoken, error = await self._finish_reply(reply)
            outcome = "failed" if error is not None or not spoken.strip() else "delivered"
            conversation.metrics.voice_turn(
                turn.request,
                reply.trace,
                "interrupted" if "interrupted" in reply.trace else outcome,
                provider=turn.generator.id,
                reply=spoken,
                error=None if error is None else str(error),
            )
            # Like text, a failed turn is not recorded; a barge-in is not a failure.
            if spoken.strip() and error is None:
                # Only what was actually said goes to history (a barge-in cuts it short).
                await conversation.record(turn, spoken)
                if self.setting("transcripts"):
                    for part in split_message(f"🔊 {spoken}"):
                        self.post_later(part)
            if error is not None:
                self.post_later(error.user_message)
            for note in turn.notes:  # e.g. the tool loop stopped at its round limit
                self.post_later(note)

    async def say(self, text: str) -> bool:
        """Speak ``text`` (no LLM): used by plugins, e.g. Twitch commentary."""

        async def once() -> AsyncIterator[str]:
            yield text

        async with self._reply_lock:
            self.trace = {}
            spoken, error = await self._finish_reply(self.player.start(once(), self.trace))
        if error is not None:
            self.post_later(error.user_message)
        return bool(spoken)

    # -- text channel ---------------------------------------------------------

    def post_later(self, text: str) -> None:
        """Queue ``text`` for the linked channel: posted in order, in the background, so a
        slow Discord never holds up listening, generation or playback."""
        self.posts.put(self.text_channel, text)

    async def flush_posts(self, timeout: float = POST_FLUSH_TIMEOUT) -> None:
        """Wait (up to ``timeout``) until every queued post went out."""
        await self.posts.flush(timeout)

    async def post(self, text: str) -> None:
        """Queue a post (see :meth:`post_later`); kept async for callers that await it."""
        self.post_later(text)

    async def notice(self, text: str) -> None:
        log.info("guild %s voice notice: %s", self.guild_id, text)
        self.post_later(text)
