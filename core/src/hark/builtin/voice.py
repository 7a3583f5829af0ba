from hark.hookspecs import hookimpl


class VoicePlugin:
    """Voice: joins voice channels, listens per speaker and answers aloud (`!join`, `!listen`)."""

    @hookimpl
    def register_cogs(self, register):
        from hark.cogs.voice import VoiceCog

        register(VoiceCog)
