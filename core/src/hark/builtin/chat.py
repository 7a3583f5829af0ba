from hark.hookspecs import hookimpl


class ChatPlugin:
    """Chat: answers mentions, replies, DMs and callsigns through the LLM (`!ask`, `!model`)."""

    @hookimpl
    def register_cogs(self, register):
        from hark.cogs.chat import ChatCog

        register(ChatCog)
