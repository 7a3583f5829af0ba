"""ElevenLabs text to speech for Hark: voices streamed as PCM into Discord voice."""

from __future__ import annotations

import hark
from hark_tts_elevenlabs.cog import ElevenLabsCog
from hark_tts_elevenlabs.settings import (
    DEFAULT_BASE_URL,
    DEFAULT_MODEL,
    ELEVENLABS_KEY,
    ElevenLabsSettings,
)
from hark_tts_elevenlabs.synthesizer import ElevenLabsSynthesizer, VoiceInfo, voice_settings

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MODEL",
    "ELEVENLABS_KEY",
    "ElevenLabsCog",
    "ElevenLabsSettings",
    "ElevenLabsSynthesizer",
    "VoiceInfo",
    "plugin",
    "voice_settings",
]


plugin = hark.Plugin(
    description="ElevenLabs text to speech: voices streamed as PCM into Discord voice",
    settings=ElevenLabsSettings,
    secrets=[ELEVENLABS_KEY],
    providers=[ElevenLabsSynthesizer],
    cogs=[ElevenLabsCog],
)
