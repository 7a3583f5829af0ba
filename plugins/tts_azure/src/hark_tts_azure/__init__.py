"""Azure AI Speech text to speech for Hark: neural voices, streamed as Discord audio."""

from __future__ import annotations

from hark import hookimpl
from hark_tts_azure.cog import AzureCog
from hark_tts_azure.ssml import build_ssml, parse_pitch, parse_rate
from hark_tts_azure.synthesizer import (
    DEFAULT_VOICE,
    OUTPUT_FORMAT,
    AzureSynthesizer,
    PcmToDiscord,
    Voice,
)

__all__ = [
    "DEFAULT_VOICE",
    "OUTPUT_FORMAT",
    "AzureCog",
    "AzureSynthesizer",
    "PcmToDiscord",
    "Voice",
    "build_ssml",
    "parse_pitch",
    "parse_rate",
    "register_cogs",
    "register_synthesizers",
]


@hookimpl
def register_synthesizers(register):
    # Configured from the environment (AZURE_SPEECH_*), read when the bot loads plugins.
    register(AzureSynthesizer())


@hookimpl
def register_cogs(register):
    register(AzureCog)
