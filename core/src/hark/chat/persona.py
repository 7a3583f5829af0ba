"""The persona: the system prompt, from config, overridable per server and per channel."""

from __future__ import annotations

from hark.providers import ContextPart, ContextProvider, ContextRequest, PromptMessage


class PersonaContext(ContextProvider):
    name = "persona"
    timeout = 1.0
    inline = True  # the prompt is read from memory
    default_settings = {"prompt": None}

    def __init__(self, default_prompt: str) -> None:
        super().__init__()
        self.default_prompt = default_prompt

    def prompt_for(self, guild_id: int | None, channel_id: int | None) -> tuple[str, str]:
        """The effective persona and where it comes from ("channel", "server", "default")."""
        if self.settings is not None:
            if channel_id is not None:
                channel_prompt = self.settings.channel(channel_id).get("prompt", None)
                if channel_prompt:
                    return channel_prompt, "channel"
            if guild_id is not None and self.settings.guild(guild_id).is_set("prompt"):
                server_prompt = self.settings.guild(guild_id).get("prompt", None)
                if server_prompt:
                    return server_prompt, "server"
            configured = self.settings.global_().get("prompt", None)
            if configured:
                return configured, "default"
        return self.default_prompt, "default"

    async def _impl(self, request: ContextRequest) -> ContextPart | None:
        prompt, _ = self.prompt_for(request.guild_id, request.channel_id)
        # str.replace, not format(): a persona may legitimately contain braces.
        text = prompt.replace("{bot_name}", request.bot_name or "the bot")
        return ContextPart([PromptMessage("system", text)], order=0)
