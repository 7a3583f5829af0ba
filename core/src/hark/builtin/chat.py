"""Chat: answers mentions, replies, DMs and callsigns through the LLM (`!ask`, `!model`)."""

from hark.hookspecs import hookimpl


@hookimpl
def register_cogs(register):
    from hark.cogs.chat import ChatCog

    register(ChatCog)
