"""Hark: a plugin-based AI companion for Discord.

Plugin authors need only this module: ``Plugin`` declares a plugin (with a
``Settings`` model of ``setting(...)`` fields and its ``Secret`` declarations),
``hookimpl`` marks hook implementations, and the provider base classes and data
types are re-exported here.
"""

import pkgutil
from importlib.metadata import PackageNotFoundError, version

# hark.testing, the test kit, is another distribution (hark-testing) installing into
# this package: let it be found wherever it is installed (an editable checkout too).
__path__ = pkgutil.extend_path(__path__, __name__)

from hark.chat.ratelimit import RateLimiter
from hark.chat.ratelimit import parse_rate as parse_rate_limit
from hark.chat.streaming import NO_PINGS
from hark.chat.triggers import callsign_pattern
from hark.cog import PluginCog, can_manage, manage_server, require_manager
from hark.control import ControlError
from hark.hookspecs import hookimpl
from hark.logs import register_secret
from hark.plugin import RESET_WORDS, Plugin, Secret, Settings, setting
from hark.providers import (
    AudioChunk,
    AudioClip,
    Capability,
    ContextPart,
    ContextProvider,
    ContextRequest,
    GenerationRequest,
    Generator,
    ImagePart,
    PromptMessage,
    Provider,
    RetryPolicy,
    SpeakerTurns,
    Synthesizer,
    ToolCall,
    ToolSpec,
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
    parse_retry_after,
    retry_after_from,
)
from hark.settings import Resolved, SettingError
from hark.text import split_message
from hark.tools import Tool, Toolbox, ToolContext, ToolResult, tool


def __getattr__(name: str):
    # Loaded on first use: it brings numpy and soxr along (hark.audio is public too).
    if name == "StreamResampler":
        from hark.audio import StreamResampler

        return StreamResampler
    raise AttributeError(f"module 'hark' has no attribute {name!r}")


try:
    __version__ = version("hark")
except PackageNotFoundError:  # running from a source checkout that was not installed
    __version__ = "0.0.0"

__all__ = [
    "NO_PINGS",
    "RESET_WORDS",
    "AudioChunk",
    "AudioClip",
    "BadOutputError",
    "Capability",
    "ConfigurationError",
    "ContextPart",
    "ContextProvider",
    "ContextRequest",
    "ControlError",
    "GenerationRequest",
    "Generator",
    "ImagePart",
    "Plugin",
    "PluginCog",
    "PromptMessage",
    "Provider",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderStatusError",
    "ProviderTimeoutError",
    "RateLimiter",
    "Resolved",
    "RetryPolicy",
    "Secret",
    "SettingError",
    "Settings",
    "SpeakerTurns",
    "StreamResampler",
    "Synthesizer",
    "Tool",
    "ToolCall",
    "ToolContext",
    "ToolResult",
    "ToolSpec",
    "Toolbox",
    "Transcriber",
    "Transcript",
    "TurnDetector",
    "TurnUpdate",
    "Utterance",
    "__version__",
    "callsign_pattern",
    "can_manage",
    "hookimpl",
    "manage_server",
    "parse_rate_limit",
    "parse_retry_after",
    "register_secret",
    "require_manager",
    "retry_after_from",
    "setting",
    "split_message",
    "tool",
]
