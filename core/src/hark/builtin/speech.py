"""Speech: `!say`, and an optional voice.wav with every text reply (`!speech`)."""

from hark.hookspecs import hookimpl


@hookimpl
def register_cogs(register):
    from hark.cogs.speech import SpeechCog

    register(SpeechCog)
