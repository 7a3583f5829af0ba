"""Piper: an offline voice that needs no key (en_US-joe-medium by default).

Speech is synthesized sentence by sentence in a worker thread and streamed to
the bot as 48 kHz stereo as soon as each sentence is ready. It ranks below a
configured cloud voice, so it is the voice a server gets when nothing else is set up.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import hark
from hark_tts_piper.cog import PiperCog
from hark_tts_piper.settings import MAX_SPEED, MIN_SPEED, PiperSettings
from hark_tts_piper.synthesizer import PiperSynthesizer, speak_all
from hark_tts_piper.text import speech_text, split_for_speech
from hark_tts_piper.voice import LoadedVoice, VoicePaths, load_voice, resolve_paths

__all__ = [
    "MAX_SPEED",
    "MIN_SPEED",
    "LoadedVoice",
    "PiperCog",
    "PiperSettings",
    "PiperSynthesizer",
    "VoicePaths",
    "load_voice",
    "plugin",
    "prepare",
    "resolve_paths",
    "speak_all",
    "speech_text",
    "split_for_speech",
]


def prepare(progress: Callable[..., None] | None = None) -> None:
    """``bot prepare``: load the voice and speak one sentence, so a broken install or a
    bad ``model`` setting (``PIPER_MODEL``) shows up before the bot runs. Nothing is
    downloaded."""
    say = progress or (lambda message, fraction=None: None)
    synthesizer = PiperSynthesizer()
    synthesizer.plugin_id = "tts_piper"
    paths = synthesizer.paths()
    say(f"voice {paths.name} ({paths.source}): {paths.model}", 0.0)
    started = time.perf_counter()
    voice = synthesizer.load_sync()
    say(f"loaded in {time.perf_counter() - started:.1f}s ({voice.sample_rate} Hz)", 0.5)
    started = time.perf_counter()
    seconds = sum(
        len(chunk.audio_int16_bytes) / 2 / chunk.sample_rate
        for chunk in voice.piper.synthesize("Piper is ready.")
    )
    if seconds <= 0:
        raise RuntimeError(f"the Piper voice {paths.name} produced no audio")
    say(f"spoke {seconds:.1f}s of audio in {time.perf_counter() - started:.2f}s", 1.0)


plugin = hark.Plugin(
    description="An offline voice (Piper), no key needed, streamed sentence by sentence",
    settings=PiperSettings,
    # One synthesizer per bot; it loads the voice lazily, so registering costs nothing.
    providers=[PiperSynthesizer],
    cogs=[PiperCog],
    prepare=prepare,
)
