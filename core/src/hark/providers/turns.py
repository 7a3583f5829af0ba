"""Turn detection as a provider kind: when has a speaker finished their turn?

A :class:`TurnDetector` is chosen per server like a transcriber (``!plugins use
turn ID``); the core's default is webrtcvad with a silence threshold. For each
speaker the voice session opens a :class:`SpeakerTurns`, a small synchronous state
machine fed 20 ms frames of 48 kHz stereo s16le from voice-recv's router thread
(off the event loop) and polled by the event loop about every 50 ms, whether or not
packets arrive (Discord sends nothing while someone is silent). Both may be called
from different threads at once: implementations guard their state with a lock, and
neither may need an event loop. Times (``now``, ``Utterance.started``/``ended``) are
:func:`time.monotonic` seconds; ``now`` defaults to that clock, and tests pass it to
simulate time.

Each call returns a :class:`TurnUpdate` or None:

- ``speech``: speech started (barge-in uses this: the bot pauses at once);
- ``pause``: trailing silence began (a short one, ~200 ms) and ``utterance`` holds
  the audio so far: the session may transcribe it speculatively;
- ``resumed``: the speaker went on after a ``pause``: a speculative result is stale;
- ``end``: the turn is over; ``utterance`` is the whole turn (same audio and
  ``speech_ms`` as the last ``pause`` if nothing was heard since; any silence since
  may be appended);
- ``dropped``: what was heard was too short or not speech (a click, a cough);
  ``utterance`` may carry what was heard.

Per utterance the updates come in this order: ``speech``, then ``pause`` and
``resumed`` alternating, then ``end`` or ``dropped``; :attr:`SpeakerTurns.speaking`
is True from ``speech`` until ``end``/``dropped``. Less than the server's
``min_speech_ms`` of speech is ``dropped``, never an ``end``; an utterance that
reaches ``max_utterance_ms`` ends and the speech goes on as a new one. After an
``end``, ``dropped`` or :meth:`SpeakerTurns.reset` the next utterance starts afresh:
none of the earlier audio is in it.

How the voice session reads them: a ``pause`` utterance has ``reason="pause"``; its
speculative transcript is reused at ``end`` only if no ``resumed`` came in between
and ``speech_ms`` did not grow; while the bot talks, ``speech``, ``resumed`` or a
speaker's ``speech_ms`` growing pauses it, and ``speech_ms`` decides whether an
interruption was long enough (so keep it counting voiced milliseconds); an ``end``
whose ``speech_probability`` is below the server's ``min_speech_probability`` is
not a turn. ``settings`` given to :meth:`TurnDetector.open` are all the server's
voice settings (``silence_ms``, ``pause_ms``, ``min_speech_ms``,
``max_utterance_ms``, ...), including keys a detector does not know (ignore them).

Heavy work (a model) must be cheap per frame: run inference only at ``pause``
points, and keep models loaded once per detector (``warm()``), not per speaker.
:class:`hark.testing.contracts.TurnDetectorContract` checks all of this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from hark.providers.base import Provider
from hark.providers.types import AudioClip, Capability

FRAME_MS = 20  # what Discord delivers per packet


@dataclass(frozen=True, slots=True)
class Utterance:
    user_id: int  # the SpeakerTurns' user_id
    clip: AudioClip  # 48 kHz mono s16le
    speech_ms: int  # voiced milliseconds in clip
    started: float  # monotonic seconds, like ``now``
    ended: float
    # "silence", "idle" (no packets), "max_length", "complete" (a model said so)...
    reason: str
    # How sure a detector is that this was speech (e.g. Silero's mean probability), if known.
    speech_probability: float | None = None


TurnEventKind = Literal["speech", "pause", "resumed", "end", "dropped"]


@dataclass(frozen=True, slots=True)
class TurnUpdate:
    kind: TurnEventKind
    utterance: Utterance | None = None


@runtime_checkable
class SpeakerTurns(Protocol):
    """One speaker's turn state (see the module docstring for the protocol)."""

    user_id: int

    @property
    def speaking(self) -> bool:
        """An utterance is under way (speech started and has not ended)."""
        ...

    @property
    def speech_ms(self) -> int:
        """Voiced milliseconds in the utterance under way (0 when idle)."""
        ...

    def feed(self, pcm: bytes, *, now: float | None = None) -> TurnUpdate | None:
        """One 20 ms frame of 48 kHz stereo s16le, 3,840 bytes (router thread).
        Returns at once: a model's verdict may be left for a later call to report."""
        ...

    def poll(self, now: float | None = None) -> TurnUpdate | None:
        """Called about every 50 ms by the event loop, also while frames arrive: timers
        (no packets, waits). Must not block."""
        ...

    def reset(self) -> None:
        """Forget the utterance under way: no update about it follows (any pending
        verdict is discarded), and the next frame starts afresh."""
        ...


class TurnDetector(Provider):
    """Decides when each speaker's turn ends. Subclasses implement ``_open``."""

    capability: ClassVar[Capability] = Capability.TURN
    # Turn detection runs per frame: the provider call machinery (timeouts, retries)
    # does not apply; a detector that fails to open is reported and the core falls
    # back to its default.

    def open(self, user_id: int, *, guild_id: int | None = None, **settings: Any) -> SpeakerTurns:
        """A new per-speaker state machine. ``settings`` are the server's voice
        settings (e.g. ``silence_ms``, ``min_speech_ms``) for detectors that use them;
        unknown keys are ignored. May run on the router thread: keep it cheap (models
        are loaded once per detector, not per speaker)."""
        return self._open(user_id, guild_id=guild_id, **settings)

    def _open(self, user_id: int, *, guild_id: int | None, **settings: Any) -> SpeakerTurns:
        raise NotImplementedError
