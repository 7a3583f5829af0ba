"""Azure AI Speech text to speech for Hark: neural voices, streamed as Discord audio."""

from __future__ import annotations

from collections.abc import Callable

import hark
from hark_tts_azure.cog import AzureCog
from hark_tts_azure.settings import AZURE_KEY, DEFAULT_VOICE, AzureSettings
from hark_tts_azure.ssml import build_ssml, parse_pitch, parse_rate
from hark_tts_azure.synthesizer import OUTPUT_FORMAT, AzureSynthesizer, PcmToDiscord, Voice

__all__ = [
    "AZURE_KEY",
    "DEFAULT_VOICE",
    "OUTPUT_FORMAT",
    "AzureCog",
    "AzureSettings",
    "AzureSynthesizer",
    "PcmToDiscord",
    "Voice",
    "build_ssml",
    "parse_pitch",
    "parse_rate",
    "plugin",
    "prepare",
]


async def prepare(progress: Callable[..., None] | None = None) -> None:
    """``bot prepare tts_azure``: check that the key works and the default voice exists."""
    report = progress or (lambda message, fraction=None: None)
    synthesizer = AzureSynthesizer()
    synthesizer.plugin_id = "tts_azure"
    try:
        reason = synthesizer.unavailable_reason()
        if reason:
            raise hark.ConfigurationError(f"Azure Speech is not set up: {reason}")
        report(f"fetching the voice list ({synthesizer.where})", 0.1)
        voices = await synthesizer.list_voices()
        voice = await synthesizer.find_voice(synthesizer.default_voice)
        if voice is None:
            raise hark.ConfigurationError(
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


plugin = hark.Plugin(
    description="Azure AI Speech text to speech: neural voices, streamed as Discord audio",
    settings=AzureSettings,
    secrets=[AZURE_KEY],
    providers=[AzureSynthesizer],
    cogs=[AzureCog],
    prepare=prepare,
)
