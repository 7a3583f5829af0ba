"""Barge-in: a member who talks over the bot, handled in two steps.

1. :meth:`BargeIn.watch`: a listened-to member whose speech grows while the bot
   talks *holds* its playback (paused at once: the next 20 ms frame is silence).
   :meth:`BargeIn.onset` holds it even sooner, on two loud frames: a model-based
   detector needs ~150 ms to be sure of an unvoiced start ("st-"); if the detector
   has not heard speech ``barge_in_onset_ms`` later, the hold ends (a cough, a
   tone, a door).
2. The transcript judges it, the speculative one at the speaker's pause
   (:meth:`BargeIn.judge_at_pause`) or the whole one at the end of the utterance
   (:meth:`BargeIn.judge_at_end`): words that are not only backchannel ("mm-hm")
   confirm the interruption, which cancels the rest of the reply; anything else
   releases the hold, and once nobody holds it playback resumes where it paused.

Whether an utterance had ``barge_in_ms`` of speech over the bot is decided by the
session's turn handling, which releases a hold that is too short. Also here: the
word helpers that tell speech from noise in a transcript.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import time
from typing import TYPE_CHECKING, Any, Protocol

from hark.providers import Transcript

if TYPE_CHECKING:
    from hark.voice.reply import Player
    from hark.voice.speakers import PendingTurn, Speaker, TranscriptResult, UtteranceState

# The session's logger: these lines read (and are filtered) as the session's, as before.
log = logging.getLogger("hark.voice.session")

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


def transcript_ok(transcript: Transcript, min_confidence: float) -> bool:
    """Words, with at least ``min_confidence`` from a transcriber that reports one."""
    if not has_words(transcript.text.strip()):
        return False
    confidence = transcript.confidence
    return confidence is None or confidence >= min_confidence


class Host(Protocol):
    """What barge-in uses of the voice session that owns it."""

    guild_id: int
    counts: collections.Counter[str]
    speakers: dict[int, Speaker]
    player: Player

    def setting(self, key: str) -> Any: ...

    def queue_turn(self, pending: PendingTurn) -> None: ...

    def discard(self, pending: PendingTurn) -> None: ...

    def interrupt(self) -> None: ...


class BargeIn:
    """Pauses, resumes or interrupts the session's reply for whoever talks over it.

    Its state lives on each :class:`~hark.voice.speakers.Speaker` (``holding``,
    ``judging``, ``seen_ms``) and their utterance (``over_from``, ``confirmed``).
    """

    def __init__(self, host: Host) -> None:
        self.host = host

    def watch(self, speaker: Speaker, speech_ms: int, *, started: bool = False) -> None:
        """Step 1: someone's voice over the bot pauses it (the next frame is silence).
        Voice is speech_ms growing, or a detector's ``speech`` / ``resumed``."""
        before, speaker.seen_ms = speaker.seen_ms, speech_ms
        if (speech_ms <= before and not started) or not self.host.player.speaking:
            return
        utt = speaker.utt
        if utt.over_from is None:
            utt.over_from = min(before, speech_ms)  # speech before this frame was not over it
        if speaker.holding or utt.confirmed:
            return
        if speech_ms - utt.over_from >= int(self.host.setting("barge_in_pause_ms")):
            self._hold(speaker)

    def onset(self, speaker: Speaker, level: float) -> None:
        """Step 1, early: two loud frames in a row over the bot hold it."""
        threshold = float(self.host.setting("barge_in_onset_rms"))
        if int(self.host.setting("barge_in_pause_ms")) > 0:
            threshold = 0  # the server wants some speech before a pause, not a sound
        now = time.monotonic()
        if threshold <= 0 or level < threshold:
            speaker.loud_frames, speaker.onset_spent = 0, False  # a quiet frame ends a run
            return
        if now - speaker.last_loud > 0.1:  # no packets for a while (Discord's silence)
            speaker.loud_frames, speaker.onset_spent = 0, False
        speaker.last_loud = now
        speaker.loud_frames += 1
        if (
            speaker.loud_frames < 2  # one loud frame is a click
            or not self.host.player.speaking
            or speaker.holding
            or speaker.onset_spent
            or speaker.utt.confirmed
        ):
            return
        speaker.onset_spent = True  # one hold per loud run: a long hum holds it once
        speaker.onset_at = now
        self._hold(speaker)

    def onset_pending(self, speaker: Speaker) -> bool:
        """An onset hold still waiting for the detector to hear speech."""
        if speaker.onset_at is None:
            return False
        waited = time.monotonic() - speaker.onset_at
        if waited * 1000 < float(self.host.setting("barge_in_onset_ms")):
            return True
        speaker.onset_at = None
        return False

    def _hold(self, speaker: Speaker) -> None:
        reply = self.host.player.current
        if reply is None:
            return
        speaker.holding = True
        if reply.source.pause():
            reply.trace.setdefault("paused_at", reply.source.paused_at or time.monotonic())
            log.info(
                "guild %s: user %s speaks over the bot: paused",
                self.host.guild_id,
                speaker.user_id,
            )

    def release(self, speaker: Speaker) -> None:
        """``speaker`` no longer holds the bot's playback: it resumes if nobody does."""
        speaker.onset_at = None
        if speaker.holding:
            speaker.holding = False
            self._resume_if_free()

    def reply_ended(self) -> None:
        """Nobody holds a reply that is over."""
        for speaker in self.host.speakers.values():
            speaker.holding = False

    def _resume_if_free(self) -> None:
        if any(s.holding for s in self.host.speakers.values()):
            return
        reply = self.host.player.current
        if reply is not None and reply.source.resume():
            reply.trace.setdefault("resumed_at", reply.source.resumed_at or time.monotonic())
            log.info("guild %s: not an interruption: playing on", self.host.guild_id)

    def _interrupts(self, result: TranscriptResult | None) -> bool:
        """Step 2: words (not only "mm-hm") that look like speech confirm an interruption."""
        if not isinstance(result, Transcript):
            return False
        if not transcript_ok(result, float(self.host.setting("min_confidence"))):
            return False
        return not is_filler(result.text)

    def judge_at_pause(
        self, speaker: Speaker, utt: UtteranceState, task: asyncio.Task[Any]
    ) -> None:
        """Step 2 at the speaker's pause (a done callback of its speculative transcript)."""
        speaker.judging = False
        if utt.speculative is not task or task.cancelled():
            return  # the speaker went on: decided at the next pause or the end
        if self._interrupts(task.result()):
            self._confirm(speaker, utt)
        else:
            self.release(speaker)

    async def judge_at_end(self, speaker: Speaker, pending: PendingTurn) -> None:
        """Step 2 at the end of the utterance: a confirmed interruption becomes a turn;
        anything else is dropped and playback goes on."""
        try:
            await asyncio.wait([pending.transcript])
            task = pending.transcript
            result = None if task.cancelled() else task.result()
            if self._interrupts(result):
                self._confirm(speaker, None)
                self.host.queue_turn(pending)
            else:
                log.info(
                    "guild %s: user %s: no words, play on", self.host.guild_id, speaker.user_id
                )
                self.host.counts["false_interruptions"] += 1
                self.host.discard(pending)
                self.release(speaker)
        finally:
            speaker.judging = False

    def _confirm(self, speaker: Speaker, utt: UtteranceState | None) -> None:
        if utt is not None:
            utt.confirmed = True
        speaker.holding = False
        if self.host.player.current is not None:
            log.info("guild %s: user %s interrupted the bot", self.host.guild_id, speaker.user_id)
            self.host.interrupt()
