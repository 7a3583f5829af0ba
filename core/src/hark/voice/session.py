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
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import discord
from discord.ext import voice_recv

from hark.audio import DISCORD_CHANNELS, DISCORD_RATE, StreamResampler
from hark.chat.streaming import NO_PINGS
from hark.chat.triggers import callsign_pattern
from hark.providers import (
    Capability,
    ContextRequest,
    Provider,
    Synthesizer,
    Transcriber,
    Transcript,
    TurnDetector,
)
from hark.providers.errors import ConfigurationError, ProviderError
from hark.providers.turns import SpeakerTurns, TurnUpdate, Utterance
from hark.text import split_message
from hark.voice.playback import SpeechSource
from hark.voice.sentences import SentenceSplitter
from hark.voice.turns import TurnSettings, WebRTCTurnDetector

if TYPE_CHECKING:
    from hark.bot import HarkBot
    from hark.chat.pipeline import Turn
    from hark.control import PluginControl

log = logging.getLogger(__name__)

WATCHDOG_INTERVAL = 1.0
POLL_INTERVAL = 0.05
# More restarts than this in a minute: something is deeply wrong; stop and say so.
MAX_REVIVALS_PER_MINUTE = 5
# One provider's warm-up may take this long (a cold model load from disk).
WARM_TIMEOUT = 120.0
# A turn waits at most this long for a warm-up under way (then goes ahead anyway).
WARM_WAIT = 30.0
# close() waits this long for queued posts (e.g. a goodbye notice) to go out.
POST_FLUSH_TIMEOUT = 5.0
# What a session warms: everything on a voice turn's path.
WARMED = (Capability.TURN, Capability.TRANSCRIBE, Capability.GENERATE, Capability.SYNTHESIZE)

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
    "barge_in_ms": 400,  # speech (with words) over the bot that cancels the reply
    "preemptive": False,  # generate from the speculative transcript (costs LLM calls)
    "min_speech_probability": 0.5,  # detectors that report one: below it, not speech
    "min_confidence": 0.2,  # transcribers that report one: below it, not speech
    "alone_timeout_s": 15.0,
}

# What someone says over the bot to show they are listening, not to take the turn.
FILLERS = frozenset(
    {
        *("mm", "mmm", "mmmm", "hm", "hmm", "mhm", "mmhm", "mmhmm", "uhhuh"),
        *("uh", "um", "umm", "ah", "oh", "yeah", "yep", "yes", "ok", "okay", "right", "sure"),
    }
)


def has_words(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


def is_filler(text: str) -> bool:
    """Only backchannel sounds ("Mm-hmm.", "yeah, okay"): no attempt to take the turn."""
    words = re.findall(r"[a-z]+", re.sub(r"[-'’]", "", text.lower()))
    return bool(words) and all(word in FILLERS for word in words)


async def warm_provider(provider: Provider) -> bool:
    """Run ``provider.warm()`` with a deadline; a failure is logged, never raised."""
    try:
        async with asyncio.timeout(WARM_TIMEOUT):
            await provider.warm()
    except Exception as exc:
        log.warning("warming %s failed: %s", provider.id, exc)
        return False
    return True


def _providers_to_warm(control: PluginControl, guild_id: int) -> dict[Capability, Provider]:
    found: dict[Capability, Provider] = {}
    for capability in WARMED:
        provider = control.provider_for(capability, guild_id)
        if provider is not None:
            found[capability] = provider
    return found


async def warm_guild(control: PluginControl, guild_id: int) -> None:
    """Warm a server's voice providers (at start-up, for servers that had a session)."""
    providers = {id(p): p for p in _providers_to_warm(control, guild_id).values()}
    await asyncio.gather(*(warm_provider(p) for p in providers.values()))


_FALLBACK_DETECTOR = WebRTCTurnDetector()


@dataclass(slots=True)
class Heard:
    user_id: int
    name: str
    text: str


TranscriptResult = Transcript | ProviderError


@dataclass(slots=True)
class _Pending:
    """A finished utterance waiting for the worker, with its (maybe speculative) transcript."""

    utterance: Utterance
    transcript: asyncio.Task[TranscriptResult]
    stages: dict[str, float]
    preemptive: _Reply | None = None


@dataclass(slots=True)
class _Utterance:
    """What the session knows about one speaker's utterance under way."""

    stages: dict[str, float] = field(default_factory=dict)
    speculative: asyncio.Task[TranscriptResult] | None = None
    speculative_speech_ms: int = 0
    preemptive: _Reply | None = None
    # Barge-in: speech_ms when this utterance first got louder while the bot talked.
    over_from: int | None = None
    confirmed: bool = False  # it confirmed an interruption


class _Speaker:
    def __init__(self, user_id: int, turns: SpeakerTurns, detector_id: str) -> None:
        self.user_id = user_id
        self.turns = turns
        self.detector_id = detector_id
        self.utt = _Utterance()
        self.seen_ms = 0  # speech_ms at the last frame (barge-in watches it grow)
        self.holding = False  # this speaker holds the bot's playback paused
        self.judging = False  # a transcript that decides the interruption is on its way


class _Reply:
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
        self._speakers: dict[int, _Speaker] = {}
        self._speakers_lock = threading.Lock()
        self._pending: asyncio.Queue[_Pending] = asyncio.Queue()
        self._reply_lock = asyncio.Lock()
        self._reply: _Reply | None = None  # the reply being spoken (released)
        self._playing: asyncio.Event | None = None  # set when the current playback ends
        self._tasks: list[asyncio.Task[Any]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._posts: asyncio.Queue[tuple[Any, str]] = asyncio.Queue()
        self._poster: asyncio.Task[None] | None = None
        self._warm: dict[Capability, asyncio.Task[bool]] = {}
        self._warm_all: asyncio.Task[None] | None = None
        self.warm_done_at: float | None = None
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
            self._discard(self._pending.get_nowait())

    def _clear_speakers(self) -> None:
        with self._speakers_lock:
            speakers, self._speakers = list(self._speakers.values()), {}
        for speaker in speakers:
            self._forget(speaker.utt)
            if speaker.holding:
                speaker.holding = False
                self._resume_if_free()

    async def close(self) -> None:
        self.stop_listening()
        self.interrupt()
        for task in [*self._warm.values(), *self._background]:
            task.cancel()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        await self.flush_posts()
        if self._poster is not None:
            self._poster.cancel()
        if self.vc.is_connected():
            await self.vc.disconnect(force=True)

    # -- warm-up ---------------------------------------------------------------

    def start_warm(self) -> None:
        """Warm this server's turn detector, transcriber, generator and synthesizer in
        the background (at `join` and `listen`), so the first turn is as fast as the next."""
        if self._warm_all is not None and not self._warm_all.done():
            return
        started = time.monotonic()
        by_provider: dict[int, asyncio.Task[bool]] = {}
        warm: dict[Capability, asyncio.Task[bool]] = {}
        for capability, provider in _providers_to_warm(self.bot.control, self.guild_id).items():
            task = by_provider.get(id(provider))
            if task is None:
                task = by_provider[id(provider)] = asyncio.create_task(
                    warm_provider(provider), name=f"voice-warm-{provider.id}"
                )
            warm[capability] = task
        self._warm = warm

        async def finish() -> None:
            await asyncio.gather(*by_provider.values())
            self.warm_done_at = time.monotonic()
            log.info(
                "guild %s: voice providers warm in %.2fs (%s)",
                self.guild_id,
                self.warm_done_at - started,
                ", ".join(
                    p.id for p in _providers_to_warm(self.bot.control, self.guild_id).values()
                ),
            )

        self._warm_all = asyncio.create_task(finish(), name=f"voice-warm-{self.guild_id}")

    async def _await_warm(self, capability: Capability, stages: dict[str, float]) -> None:
        """A turn that comes while its provider still warms up waits for it (recorded)."""
        task = self._warm.get(capability)
        if task is None or task.done():
            return
        stages.setdefault("warm_waited", time.monotonic())
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), WARM_WAIT)

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
        return {uid: speaker.detector_id for uid, speaker in self._speakers.items()}

    def _open_speaker(self, user_id: int) -> _Speaker:
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
        return _Speaker(user_id, turns, detector.id)

    def _follow_detector_choice(self) -> None:
        current = self.detector().id
        if current in self._open_failed:
            return  # it fails to open: speakers stay on the built-in one
        for user_id, speaker in list(self._speakers.items()):
            if speaker.detector_id == current or speaker.turns.speaking or speaker.holding:
                continue
            replacement = self._open_speaker(user_id)
            with self._speakers_lock:
                if self._speakers.get(user_id) is speaker:
                    self._speakers[user_id] = replacement
                    self._forget(speaker.utt)

    # -- receiving (router thread) ---------------------------------------------

    def on_frame(self, user_id: int, pcm: bytes) -> None:
        # Runs on voice-recv's router thread: an exception here would make voice-recv
        # stop listening for good, so nothing may escape. The decisions are made on
        # the event loop; this thread only runs the detector.
        try:
            speaker = self._speakers.get(user_id)
            if speaker is None:
                with self._speakers_lock:
                    speaker = self._speakers.get(user_id)
                    if speaker is None:
                        speaker = self._speakers[user_id] = self._open_speaker(user_id)
            update = speaker.turns.feed(pcm)
            # Every frame goes to the loop, not only updates: barge-in watches speech_ms
            # grow while the bot talks (50 wake-ups a second per speaker: cheap).
            self.loop.call_soon_threadsafe(self._on_feed, speaker, update, speaker.turns.speech_ms)
        except Exception:
            if not self._frame_error_logged:
                self._frame_error_logged = True
                log.exception("guild %s: voice frame handling failed", self.guild_id)

    # -- turn updates (event loop) ------------------------------------------------

    def _on_feed(self, speaker: _Speaker, update: TurnUpdate | None, speech_ms: int) -> None:
        if self._speakers.get(speaker.user_id) is not speaker or not self.listening:
            return  # a stale state (stop, or another detector chosen since)
        if update is not None:
            self._on_update(speaker, update)
        started = update is not None and update.kind in ("speech", "resumed")
        self._watch_barge_in(speaker, speech_ms, started=started)

    async def _poll_loop(self) -> None:
        """Every speaker's timers (Discord sends nothing while someone is silent)."""
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            for speaker in list(self._speakers.values()):
                try:
                    update = speaker.turns.poll()
                except Exception:
                    log.exception("guild %s: turn detector poll failed", self.guild_id)
                    continue
                if update is not None:
                    self._on_update(speaker, update)
                if speaker.holding and not speaker.turns.speaking and not speaker.judging:
                    # Nothing left to decide on (a reset, a detector that went quiet).
                    self._release(speaker)

    def _on_update(self, speaker: _Speaker, update: TurnUpdate) -> None:
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

    def _on_speech(self, speaker: _Speaker, update: TurnUpdate) -> None:
        speaker.utt.stages.setdefault("speech_start", time.monotonic())

    def _on_pause(self, speaker: _Speaker, update: TurnUpdate) -> None:
        utterance = update.utterance
        if utterance is None:
            return
        utt = speaker.utt
        self._drop_speculation(utt, count=False)
        utt.stages["turn_pause"] = time.monotonic()
        over_bot = utt.over_from is not None and not utt.confirmed
        if over_bot and utterance.speech_ms - utt.over_from < int(self.setting("barge_in_ms")):
            # Too short to interrupt so far: play on (a new burst pauses again).
            self._release(speaker)
            return
        if int(self.setting("pause_ms")) == 0 or not self._speechlike(utterance):
            return
        if utterance.speech_ms < int(self.setting("min_speech_ms")):
            return  # would be dropped unless the speaker goes on
        task = asyncio.create_task(self._transcription(utterance, utt.stages, speculative=True))
        utt.speculative, utt.speculative_speech_ms = task, utterance.speech_ms
        if over_bot:
            speaker.judging = True
            task.add_done_callback(lambda t: self._judge_at_pause(speaker, utt, t))
        elif self.setting("preemptive"):
            self._spawn(self._preempt(speaker, utt, utterance, task))

    def _on_resumed(self, speaker: _Speaker, update: TurnUpdate) -> None:
        self._drop_speculation(speaker.utt, count=True)

    def _on_end(self, speaker: _Speaker, update: TurnUpdate) -> None:
        utterance = update.utterance
        utt, speaker.utt = speaker.utt, _Utterance()
        speaker.seen_ms = 0
        if utterance is None:
            self._forget(utt)
            return
        utt.stages["turn_end"] = time.monotonic()
        utt.stages["utterance_end"] = utterance.ended
        if not self._speechlike(utterance):
            self.counts["not_speech"] += 1
            self._forget(utt)
            self._release(speaker)
            return
        over_bot = utt.over_from is not None and not utt.confirmed
        if over_bot and utterance.speech_ms - utt.over_from < int(self.setting("barge_in_ms")):
            log.info("guild %s: user %s: a false interruption", self.guild_id, speaker.user_id)
            self.counts["false_interruptions"] += 1
            self._forget(utt)
            self._release(speaker)
            return
        task = utt.speculative
        # Reused only if nothing was said after the pause (a detector sends `resumed`;
        # more voiced audio is a second guard).
        if task is not None and utterance.speech_ms <= utt.speculative_speech_ms:
            self.counts["speculative_used"] += 1
        else:
            self._drop_speculation(utt, count=True)
            task = asyncio.create_task(self._transcription(utterance, utt.stages))
        pending = _Pending(utterance, task, utt.stages, utt.preemptive)
        if over_bot:
            speaker.judging = True
            self._spawn(self._judge_at_end(speaker, pending))
        else:
            self._pending.put_nowait(pending)

    def _on_dropped(self, speaker: _Speaker, update: TurnUpdate) -> None:
        utt, speaker.utt = speaker.utt, _Utterance()
        speaker.seen_ms = 0
        if utt.over_from is not None and not utt.confirmed:
            self.counts["false_interruptions"] += 1
        self._drop_speculation(utt, count=True)
        self._release(speaker)

    def _speechlike(self, utterance: Utterance) -> bool:
        probability = utterance.speech_probability
        return probability is None or probability >= float(self.setting("min_speech_probability"))

    def _drop_speculation(self, utt: _Utterance, *, count: bool) -> None:
        if utt.speculative is not None:
            if count:
                self.counts["speculative_discarded"] += 1
            utt.speculative.cancel()
            utt.speculative = None
            utt.stages.pop("speculative_transcribed", None)
            utt.stages.pop("turn_pause", None)
        if utt.preemptive is not None:
            self.counts["preemptive_discarded"] += 1
            utt.preemptive.cancel()
            utt.preemptive = None

    def _forget(self, utt: _Utterance) -> None:
        self._drop_speculation(utt, count=False)

    def _discard(self, pending: _Pending) -> None:
        pending.transcript.cancel()
        if pending.preemptive is not None:
            self.counts["preemptive_discarded"] += 1
            pending.preemptive.cancel()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- barge-in ----------------------------------------------------------------------

    @property
    def speaking(self) -> bool:
        reply = self._reply
        return reply is not None and reply.released.is_set() and self.vc.is_playing()

    def _watch_barge_in(self, speaker: _Speaker, speech_ms: int, *, started: bool = False) -> None:
        """Step 1: someone's voice over the bot pauses it (the next frame is silence).
        Voice is speech_ms growing, or a detector's ``speech`` / ``resumed``."""
        before, speaker.seen_ms = speaker.seen_ms, speech_ms
        if (speech_ms <= before and not started) or not self.speaking:
            return
        utt = speaker.utt
        if utt.over_from is None:
            utt.over_from = min(before, speech_ms)  # speech before this frame was not over it
        if speaker.holding or utt.confirmed:
            return
        if speech_ms - utt.over_from >= int(self.setting("barge_in_pause_ms")):
            self._hold(speaker)

    def _hold(self, speaker: _Speaker) -> None:
        reply = self._reply
        if reply is None:
            return
        speaker.holding = True
        if reply.source.pause():
            reply.trace.setdefault("paused_at", reply.source.paused_at or time.monotonic())
            log.info(
                "guild %s: user %s speaks over the bot: paused", self.guild_id, speaker.user_id
            )

    def _release(self, speaker: _Speaker) -> None:
        if speaker.holding:
            speaker.holding = False
            self._resume_if_free()

    def _resume_if_free(self) -> None:
        if any(s.holding for s in self._speakers.values()):
            return
        reply = self._reply
        if reply is not None and reply.source.resume():
            reply.trace.setdefault("resumed_at", reply.source.resumed_at or time.monotonic())
            log.info("guild %s: not an interruption: playing on", self.guild_id)

    def _interrupts(self, result: TranscriptResult | None) -> bool:
        """Step 2: words (not only "mm-hm") that look like speech confirm an interruption."""
        if not isinstance(result, Transcript) or not self._transcript_ok(result):
            return False
        return not is_filler(result.text)

    def _transcript_ok(self, transcript: Transcript) -> bool:
        if not has_words(transcript.text.strip()):
            return False
        confidence = transcript.confidence
        return confidence is None or confidence >= float(self.setting("min_confidence"))

    def _judge_at_pause(self, speaker: _Speaker, utt: _Utterance, task: asyncio.Task[Any]) -> None:
        speaker.judging = False
        if utt.speculative is not task or task.cancelled():
            return  # the speaker went on: decided at the next pause or the end
        if self._interrupts(task.result()):
            self._confirm(speaker, utt)
        else:
            self._release(speaker)

    async def _judge_at_end(self, speaker: _Speaker, pending: _Pending) -> None:
        try:
            await asyncio.wait([pending.transcript])
            task = pending.transcript
            result = None if task.cancelled() else task.result()
            if self._interrupts(result):
                self._confirm(speaker, None)
                self._pending.put_nowait(pending)
            else:
                log.info("guild %s: user %s: no words, play on", self.guild_id, speaker.user_id)
                self.counts["false_interruptions"] += 1
                self._discard(pending)
                self._release(speaker)
        finally:
            speaker.judging = False

    def _confirm(self, speaker: _Speaker, utt: _Utterance | None) -> None:
        if utt is not None:
            utt.confirmed = True
        speaker.holding = False
        if self._reply is not None:
            log.info("guild %s: user %s interrupted the bot", self.guild_id, speaker.user_id)
            self.interrupt()

    def interrupt(self) -> None:
        """Stop talking now and cancel the rest of the reply."""
        reply = self._reply
        if reply is None:
            return
        self.interruptions += 1
        self.interrupted_at = time.monotonic()
        self._mark("interrupted", reply.trace)
        reply.source.stop()
        if self.vc.is_playing():
            # VoiceRecvClient.stop() would also stop listening: stop the player only.
            self.vc.stop_playing()
        if reply.task is not None and not reply.task.done():
            reply.task.cancel()

    # -- turns -----------------------------------------------------------------

    async def _transcription(
        self, utterance: Utterance, stages: dict[str, float], *, speculative: bool = False
    ) -> TranscriptResult:
        await self._await_warm(Capability.TRANSCRIBE, stages)
        transcriber = self.bot.control.provider_for(Capability.TRANSCRIBE, self.guild_id)
        if not isinstance(transcriber, Transcriber):
            return ConfigurationError("I can't understand speech here: no transcriber is enabled.")
        names = [m.display_name for m in getattr(self.vc.channel, "members", []) if not m.bot]
        prompt = ", ".join(names) + "." if names else None
        try:
            transcript = await transcriber.transcribe(
                utterance.clip, prompt=prompt, guild_id=self.guild_id
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
                    self._discard(pending)
                continue
            self.trace = batch[-1].stages
            if self.warm_done_at is not None:
                self.trace.setdefault("warm_done", self.warm_done_at)
            try:
                heard = await self._heard(batch)
                self._mark("transcribed")
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

    def _discard_preemption(self, pending: _Pending) -> None:
        if pending.preemptive is not None:
            self.counts["preemptive_discarded"] += 1
            pending.preemptive.cancel()
            pending.preemptive = None

    @staticmethod
    def _usable_preemption(batch: list[_Pending], heard: list[Heard]) -> _Reply | None:
        if len(batch) != 1 or len(heard) != 1:
            return None
        reply = batch[0].preemptive
        if reply is None or reply.text != heard[0].text or reply.task is None:
            return None
        if reply.task.done() and (reply.task.cancelled() or reply.errors):
            return None
        return reply

    def _mark(self, stage: str, trace: dict[str, float] | None = None) -> None:
        (self.trace if trace is None else trace).setdefault(stage, time.monotonic())

    def _member_name(self, user_id: int) -> str:
        guild = self.vc.guild
        member = guild.get_member(user_id) if guild else None
        return member.display_name if member else str(user_id)

    async def _heard(self, batch: Iterable[_Pending]) -> list[Heard]:
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
        chat = self.bot.get_cog("Chat")
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
        )

    async def _preempt(
        self,
        speaker: _Speaker,
        utt: _Utterance,
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
        reply = self._start_reply(turn.stream(), utt.stages, released=False)
        reply.turn, reply.text = turn, heard[0].text
        utt.preemptive = reply
        self.counts["preemptive_started"] += 1

    async def _answer(self, heard: list[Heard], preemptive: _Reply | None = None) -> None:
        if self.setting("transcripts"):
            for h in heard:
                self.post_later(f"🎙️ **{h.name}**: {h.text}")
        conversation = self.bot.runtime.conversation
        async with self._reply_lock:
            if preemptive is not None and preemptive.turn is not None:
                self.counts["preemptive_used"] += 1
                turn, reply = preemptive.turn, preemptive
            else:
                try:
                    turn = await conversation.prepare(self._request(heard))
                except ProviderError as exc:
                    self.post_later(exc.user_message)
                    return
                reply = self._start_reply(turn.stream(), self.trace)
            spoken, error = await self._finish_reply(reply)
            # Like text, a failed turn is not recorded; a barge-in is not a failure.
            if spoken.strip() and error is None:
                # Only what was actually said goes to history (a barge-in cuts it short).
                await conversation.record(turn, spoken)
                if self.setting("transcripts"):
                    for part in split_message(f"🔊 {spoken}"):
                        self.post_later(part)
            if error is not None:
                self.post_later(error.user_message)

    async def say(self, text: str) -> bool:
        """Speak ``text`` (no LLM): used by plugins, e.g. Twitch commentary."""

        async def once() -> AsyncIterator[str]:
            yield text

        async with self._reply_lock:
            self.trace = {}
            spoken, error = await self._finish_reply(self._start_reply(once(), self.trace))
        if error is not None:
            self.post_later(error.user_message)
        return bool(spoken)

    # -- speaking ----------------------------------------------------------------------

    def _start_reply(
        self, deltas: AsyncIterator[str], trace: dict[str, float], *, released: bool = True
    ) -> _Reply:
        reply = _Reply(trace, released=released)
        reply.task = asyncio.create_task(self._speak(deltas, reply))
        return reply

    async def _finish_reply(self, reply: _Reply) -> tuple[str, ProviderError | None]:
        """Speak ``reply`` (releasing a held one); returns (what was said, the error that
        stopped it)."""
        assert reply.task is not None
        self._reply = reply
        reply.released.set()
        if reply.source.pending_seconds:
            self._ensure_playing(reply)  # a preemptive reply has its first sentence ready
        try:
            await asyncio.wait([reply.task])  # returns when done or cancelled by interrupt()
            if not reply.task.cancelled() and reply.task.exception() is not None:
                raise reply.task.exception()
            if not reply.task.cancelled():
                await self._played_out()
        finally:
            self._reply, self._playing = None, None
            for speaker in self._speakers.values():
                speaker.holding = False
            reply.source.stop()
            if reply.source.first_frame_at is not None:
                reply.trace.setdefault("first_frame", reply.source.first_frame_at)
            if self.warm_done_at is not None:  # also when this turn waited for it
                reply.trace.setdefault("warm_done", self.warm_done_at)
            self._mark("reply_done", reply.trace)
            log.debug("guild %s voice turn stages: %s", self.guild_id, reply.trace)
        said = [
            reply.sentences[i]
            for i in sorted(reply.source.started_segments)
            if i < len(reply.sentences)
        ]
        return " ".join(said), (reply.errors[0] if reply.errors else None)

    async def _speak(self, deltas: AsyncIterator[str], reply: _Reply) -> None:
        source = reply.source
        synthesizer = self.bot.control.provider_for(Capability.SYNTHESIZE, self.guild_id)
        if not isinstance(synthesizer, Synthesizer):
            reply.errors.append(
                ConfigurationError("I can't speak here: no synthesizer is enabled.")
            )
            return
        await self._await_warm(Capability.GENERATE, reply.trace)
        queue: asyncio.Queue[tuple[int, str] | None] = asyncio.Queue()
        synth = asyncio.create_task(self._synthesize(synthesizer, queue, reply))
        splitter = SentenceSplitter()
        sentences = reply.sentences
        try:
            try:
                async for delta in deltas:
                    self._mark("first_delta", reply.trace)
                    for sentence in splitter.feed(delta):
                        self._mark("first_sentence", reply.trace)
                        sentences.append(sentence)
                        queue.put_nowait((len(sentences) - 1, sentence))
                    if synth.done():
                        break  # synthesis failed: stop generating
            except ProviderError as exc:
                reply.errors.append(exc)
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
        reply: _Reply,
    ) -> None:
        source = reply.source
        await self._await_warm(Capability.SYNTHESIZE, reply.trace)
        while (item := await queue.get()) is not None:
            index, text = item
            if index > 0:
                # A held (preemptive) reply synthesizes its first sentence only, so a
                # turn that goes on wastes little synthesis.
                await reply.released.wait()
            resampler: StreamResampler | None = None
            try:
                async for clip in synthesizer.synthesize(text, guild_id=self.guild_id):
                    if resampler is None:
                        resampler = StreamResampler(
                            clip.sample_rate, clip.channels, DISCORD_RATE, DISCORD_CHANNELS
                        )
                    self._mark("first_audio", reply.trace)
                    source.add(resampler.feed(clip.pcm).pcm, index)
                    self._ensure_playing(reply)
                if resampler is not None:
                    source.add(resampler.flush().pcm, index)
            except ProviderError as exc:
                reply.errors.append(exc)
                return

    def _ensure_playing(self, reply: _Reply) -> None:
        if (
            self._playing is None
            and reply is self._reply
            and reply.released.is_set()
            and self.vc.is_connected()
        ):
            done = self._playing = asyncio.Event()

            def after(error: Exception | None) -> None:  # discord.py's player thread
                if error is not None:
                    log.warning("guild %s: playback failed: %s", self.guild_id, error)
                self.loop.call_soon_threadsafe(done.set)

            self.vc.play(reply.source, after=after)

    async def _played_out(self) -> None:
        """Wait until the queued audio has been played (or playback was stopped)."""
        if self._playing is not None:
            await self._playing.wait()

    # -- text channel ---------------------------------------------------------

    def post_later(self, text: str) -> None:
        """Queue ``text`` for the linked channel: posted in order, in the background, so a
        slow Discord never holds up listening, generation or playback."""
        channel = self.text_channel
        if channel is None:
            return
        if self._poster is None or self._poster.done():
            self._poster = asyncio.create_task(
                self._post_loop(), name=f"voice-posts-{self.guild_id}"
            )
        self._posts.put_nowait((channel, text))

    async def _post_loop(self) -> None:
        while True:
            channel, text = await self._posts.get()
            try:
                await channel.send(text[:2000], allowed_mentions=NO_PINGS)
            except discord.HTTPException as exc:
                log.warning(
                    "guild %s: could not post in the linked channel: %s", self.guild_id, exc
                )
            except Exception:
                log.exception("guild %s: posting in the linked channel failed", self.guild_id)
            finally:
                self._posts.task_done()

    async def flush_posts(self, timeout: float = POST_FLUSH_TIMEOUT) -> None:
        """Wait (up to ``timeout``) until every queued post went out."""
        if self._poster is None or self._poster.done():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._posts.join(), timeout)

    async def post(self, text: str) -> None:
        """Queue a post (see :meth:`post_later`); kept async for callers that await it."""
        self.post_later(text)

    async def notice(self, text: str) -> None:
        log.info("guild %s voice notice: %s", self.guild_id, text)
        self.post_later(text)
