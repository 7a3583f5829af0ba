"""What a voice session knows about the people it hears: each speaker's turn state
(:class:`Speaker`), the utterance under way (:class:`UtteranceState`), and a finished
one waiting for the session's worker (:class:`PendingTurn`).

Plain state, shared by the session's turn handling and barge-in; no behaviour.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hark.providers import Transcript
from hark.providers.errors import ProviderError
from hark.providers.turns import SpeakerTurns, Utterance

if TYPE_CHECKING:
    from hark.voice.reply import Reply

# A transcription's outcome: kept as a value, so a failed one can still be posted.
TranscriptResult = Transcript | ProviderError


@dataclass(slots=True)
class PendingTurn:
    """A finished utterance waiting for the worker, with its (maybe speculative) transcript."""

    utterance: Utterance
    transcript: asyncio.Task[TranscriptResult]
    stages: dict[str, float]
    preemptive: Reply | None = None


@dataclass(slots=True)
class UtteranceState:
    """What the session knows about one speaker's utterance under way."""

    stages: dict[str, float] = field(default_factory=dict)
    speculative: asyncio.Task[TranscriptResult] | None = None
    speculative_speech_ms: int = 0
    preemptive: Reply | None = None
    # Barge-in: speech_ms when this utterance first got louder while the bot talked.
    over_from: int | None = None
    confirmed: bool = False  # it confirmed an interruption


class Speaker:
    """One member's turn state (opened from the server's turn detector, ``detector_id``)
    and what barge-in tracks of them."""

    def __init__(self, user_id: int, turns: SpeakerTurns, detector_id: str) -> None:
        self.user_id = user_id
        self.turns = turns
        self.detector_id = detector_id
        self.utt = UtteranceState()
        self.seen_ms = 0  # speech_ms at the last frame (barge-in watches it grow)
        self.holding = False  # this speaker holds the bot's playback paused
        # A loud onset that paused the bot before the detector heard speech: since when
        # (None: none); the loud frames in a row, and when the last one came.
        self.onset_at: float | None = None
        self.loud_frames = 0
        self.last_loud = 0.0
        self.onset_spent = False  # this loud run already held the bot once
        self.judging = False  # a transcript that decides the interruption is on its way
