from __future__ import annotations

from typing import TYPE_CHECKING

from hark.hookspecs import hookimpl

if TYPE_CHECKING:
    from hark.runtime import Runtime


class PersonaPlugin:
    """Persona: the system prompt, per server and channel (`!persona`)."""

    # The entry point names this class: the plugin manager constructs it with the runtime.
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @hookimpl
    def register_context_providers(self, register):
        from hark.chat.persona import PersonaContext

        register(PersonaContext(self.runtime.config.system_prompt))

    @hookimpl
    def register_cogs(self, register):
        from hark.cogs.persona import PersonaCog

        register(PersonaCog)
