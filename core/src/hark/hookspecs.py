"""The hooks a Hark plugin may implement.

pluggy calls hooks synchronously, so each hook only *registers* things: provider
objects that do the async, streaming work, or Cog classes. ``register`` is a
callable supplied by the core; call it once per object.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from hark.providers import (
        ContextProvider,
        Generator,
        Synthesizer,
        Transcriber,
        TurnDetector,
    )
    from hark.tools import Tool, Toolbox

hookspec = pluggy.HookspecMarker("hark")
hookimpl = pluggy.HookimplMarker("hark")


@hookspec
def register_transcribers(register: Callable[[Transcriber], None]) -> None:
    """Register speech-to-text providers (``hark.Transcriber`` instances)."""


@hookspec
def register_generators(register: Callable[[Generator], None]) -> None:
    """Register LLM providers that stream text deltas (``hark.Generator`` instances)."""


@hookspec
def register_synthesizers(register: Callable[[Synthesizer], None]) -> None:
    """Register text-to-speech providers that stream PCM (``hark.Synthesizer`` instances)."""


@hookspec
def register_context_providers(register: Callable[[ContextProvider], None]) -> None:
    """Register providers of prompt parts: persona, history, memory, live events."""


@hookspec
def register_turn_detectors(register: Callable[[TurnDetector], None]) -> None:
    """Register voice turn detectors (``hark.TurnDetector`` instances)."""


@hookspec
def register_cogs(register: Callable[[type[Any]], None]) -> None:
    """Register ``discord.ext.commands.Cog`` subclasses (ideally ``hark.PluginCog``).

    The core instantiates each class as ``cls(bot)`` and attaches it to the bot.
    """


@hookspec
def register_tools(register: Callable[[Tool | Toolbox], None]) -> None:
    """Register tools the model may call (``hark.Tool``, e.g. made with ``@hark.tool``),
    or a ``hark.Toolbox`` whose tools are known only at run time (an MCP server's).

    A tool name is unique across plugins: a plugin registering a name another plugin
    holds fails to load, and the error names both."""
