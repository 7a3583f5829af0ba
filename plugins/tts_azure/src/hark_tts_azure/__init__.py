"""Azure AI Speech text to speech for Hark: neural voices, streamed as Discord audio."""

from __future__ import annotations

from collections.abc import Callable

from hark import hookimpl
from hark.providers.errors import ConfigurationError
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
    "prepare",
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


async def prepare(progress: Callable[..., None] | None = None) -> None:
    """``bot prepare tts_azure``: check that the key works and the default voice exists."""
    report = progress or (lambda message, fraction=None: None)
    synthesizer = AzureSynthesizer()
    synthesizer.plugin_id = "tts_azure"
    try:
        reason = synthesizer.unavailable_reason()
        if reason:
            raise ConfigurationError(f"Azure Speech is not set up: {reason}")
        report(f"fetching the voice list ({synthesizer.where})", 0.1)
        voices = await synthesizer.list_voices()
        voice = await synthesizer.find_voice(synthesizer.default_voice)
        if voice is None:
            raise ConfigurationError(
                f"Azure Speech ({synthesizer.where}) has no voice"
                f" `{synthesizer.default_voice}` (AZURE_SPEECH_VOICE)"
            )
        report(
            f"key accepted, {len(voices)} voices; default voice {voice.short_name}"
            f" ({voice.describe()})",
            1.0,
        )
    finally:
        await synthesizer.aclose()
