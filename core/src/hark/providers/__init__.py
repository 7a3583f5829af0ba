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
    ImagePart,
    PromptMessage,
    ToolCall,
    ToolSpec,
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
    "ImagePart",
    "LatencyStats",
    "PromptMessage",
    "Provider",
    "RetryPolicy",
    "SpeakerTurns",
    "Synthesizer",
    "ToolCall",
    "ToolSpec",
    "Transcriber",
    "Transcript",
    "TurnDetector",
    "TurnUpdate",
    "Utterance",
]
