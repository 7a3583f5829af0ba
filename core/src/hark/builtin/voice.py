"""Voice: joins voice channels, listens per speaker and answers aloud (`!join`, `!listen`)."""

from hark.hookspecs import hookimpl


@hookimpl
def register_cogs(register):
    # hark.cogs.voice imports the voice stack (receive, DAVE) only when a session starts,
    # so `bot plugins` and `bot console` can list this Cog without loading it.
    from hark.cogs.voice import VoiceCog

    register(VoiceCog)


@hookimpl
def register_turn_detectors(register):
    # The default turn detector (webrtcvad + silence), ranked below any plugin's.
    from hark.voice.turns import WebRTCTurnDetector

    register(WebRTCTurnDetector())
