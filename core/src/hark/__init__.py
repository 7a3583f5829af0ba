"""Hark: a plugin-based AI companion for Discord.

Plugin authors need only this module: ``hookimpl`` marks hook implementations,
and the provider base classes and data types are re-exported here.
"""

from importlib.metadata import PackageNotFoundError, version

from hark.cog import PluginCog
from hark.hookspecs import hookimpl
from hark.providers import (
    AudioChunk,
    AudioClip,
    Capability,
    ContextPart,
    ContextProvider,
    ContextRequest,
    Generator,
    PromptMessage,
    Provider,
    SpeakerTurns,
    Synthesizer,
    Transcriber,
    Transcript,
    TurnDetector,
    TurnUpdate,
    Utterance,
)
from hark.providers.errors import (
    BadOutputError,
    ConfigurationError,
    ProviderConnectionError,
    ProviderError,
    ProviderStatusError,
    ProviderTimeoutError,
)

try:
    __version__ = version("hark")
except PackageNotFoundError:  # running from a source checkout that was not installed
    __version__ = "0.0.0"

__all__ = [
    "AudioChunk",
    "AudioClip",
    "BadOutputError",
    "Capability",
    "ConfigurationError",
    "ContextPart",
    "ContextProvider",
    "ContextRequest",
    "Generator",
    "PluginCog",
    "PromptMessage",
    "Provider",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderStatusError",
    "ProviderTimeoutError",
    "SpeakerTurns",
    "Synthesizer",
    "Transcriber",
    "Transcript",
    "TurnDetector",
    "TurnUpdate",
    "Utterance",
    "__version__",
    "hookimpl",
]
