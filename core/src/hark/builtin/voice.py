from hark.hookspecs import hookimpl


class VoicePlugin:
    """Voice: joins voice channels, listens per speaker and answers aloud (`!join`, `!listen`)."""

    @hookimpl
    def register_cogs(self, register):
        from hark.cogs.voice import VoiceCog

        register(VoiceCog)

    @hookimpl
    def register_turn_detectors(self, register):
        # The default turn detector (webrtcvad + silence), ranked below any plugin's.
        from hark.voice.turns import WebRTCTurnDetector

        register(WebRTCTurnDetector())
