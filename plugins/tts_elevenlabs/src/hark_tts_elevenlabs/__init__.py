"""ElevenLabs text to speech for Hark: voices streamed as PCM into Discord voice."""

from __future__ import annotations

from hark import hookimpl
from hark_tts_elevenlabs.cog import ElevenLabsCog
from hark_tts_elevenlabs.synthesizer import (
    DEFAULT_BASE_URL,
    DEFAULT_MODEL,
    DEFAULT_SETTINGS,
    ElevenLabsSynthesizer,
    VoiceInfo,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MODEL",
    "DEFAULT_SETTINGS",
    "ElevenLabsCog",
    "ElevenLabsSynthesizer",
    "VoiceInfo",
    "register_cogs",
    "register_synthesizers",
]


@hookimpl
def register_synthesizers(register):
    # Configured from the environment (ELEVENLABS_*), read when the bot loads plugins.
    register(ElevenLabsSynthesizer())


@hookimpl
def register_cogs(register):
    register(ElevenLabsCog)
