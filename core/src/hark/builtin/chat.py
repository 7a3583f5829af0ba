"""Chat: answers mentions, replies, DMs and callsigns through the LLM (`!ask`, `!model`),
with images, text files, reply chains, threads and tools (`!config chat`)."""

from hark.chat.settings import ChatSettings
from hark.hookspecs import hookimpl
from hark.plugin import Plugin


class _Hooks:
    @hookimpl
    def register_cogs(self, register):
        # Imported when the bot registers Cogs, so `bot plugins` loads no discord.py Cog.
        from hark.cogs.chat import ChatCog

        register(ChatCog)


plugin = Plugin(
    description=__doc__.splitlines()[0].split(": ", 1)[1],
    settings=ChatSettings,
    hooks=_Hooks(),
)
