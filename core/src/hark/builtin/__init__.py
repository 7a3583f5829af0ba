"""Plugins that ship inside the core and use the same hooks as any other plugin.

``core`` (plugin management) is protected: it can't be disabled or blocked.
``persona``, ``history``, ``chat``, ``voice`` and ``speech`` can be switched per
server like any plugin, and blocked globally with ``HARK_BLOCK_PLUGINS``; the
allow-list does not apply to them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hark.plugins import CORE_PLUGIN_ID, PluginManager

if TYPE_CHECKING:
    from hark.runtime import Runtime


def install_builtins(manager: PluginManager, runtime: Runtime) -> None:
    from hark import __version__
    from hark.builtin.chat import ChatPlugin
    from hark.builtin.core import CorePlugin
    from hark.builtin.history import HistoryPlugin
    from hark.builtin.persona import PersonaPlugin
    from hark.builtin.speech import SpeechPlugin
    from hark.builtin.voice import VoicePlugin

    builtins = {
        CORE_PLUGIN_ID: CorePlugin(),
        "persona": PersonaPlugin(runtime),
        "history": HistoryPlugin(runtime),
        "chat": ChatPlugin(),
        "voice": VoicePlugin(),
        "speech": SpeechPlugin(),
    }
    for plugin_id, plugin in builtins.items():
        if plugin_id not in manager.plugins:
            manager.add(
                plugin,
                plugin_id,
                protected=plugin_id == CORE_PLUGIN_ID,
                builtin=True,
                version=__version__,
            )
