from hark.hookspecs import hookimpl


class SpeechPlugin:
    """Speech: `!say`, and an optional voice.wav with every text reply (`!speech`)."""

    @hookimpl
    def register_cogs(self, register):
        from hark.cogs.speech import SpeechCog

        register(SpeechCog)
