from __future__ import annotations

from typing import TYPE_CHECKING

from hark.hookspecs import hookimpl

if TYPE_CHECKING:
    from hark.runtime import Runtime


class HistoryPlugin:
    """History: each channel's recent conversation, kept across restarts (`!reset`)."""

    # The entry point names this class: the plugin manager constructs it with the runtime.
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @hookimpl
    def register_context_providers(self, register):
        from hark.chat.history import HistoryContext

        register(HistoryContext(self.runtime.history, self.runtime.config.history_depth))

    @hookimpl
    def register_cogs(self, register):
        from hark.cogs.history import HistoryCog

        register(HistoryCog)
