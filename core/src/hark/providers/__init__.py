"""Provider base classes, data types and errors."""

from hark.providers.base import Provider
from hark.providers.kinds import (
    ContextProvider,
    GenerationRequest,
    Generator,
    Synthesizer,
    Transcriber,
)
from hark.providers.policy import LatencyStats, RetryPolicy
from hark.providers.turns import SpeakerTurns, TurnDetector, TurnUpdate, Utterance
from hark.providers.types import (
    AudioChunk,
    AudioClip,
    Capability,
    ContextPart,
    ContextRequest,
    PromptMessage,
    Transcript,
)

__all__ = [
    "AudioChunk",
    "AudioClip",
    "Capability",
    "ContextPart",
    "ContextProvider",
    "ContextRequest",
    "GenerationRequest",
    "Generator",
    "LatencyStats",
    "PromptMessage",
    "Provider",
    "RetryPolicy",
    "SpeakerTurns",
    "Synthesizer",
    "Transcriber",
    "Transcript",
    "TurnDetector",
    "TurnUpdate",
    "Utterance",
]
