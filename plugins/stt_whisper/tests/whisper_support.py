"""Constants and helpers shared by this plugin's tests (a uniquely named module, so it
cannot clash with another package's test helpers when the whole repository is tested)."""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hark_stt_whisper import plugin

import hark
from hark import AudioClip, RetryPolicy
from hark.audio import convert, read_wav, rms

log = logging.getLogger(__name__)

# Looks like a real OpenAI key, so a leak would be unmistakable.
KEY = "sk-proj-TEST-0123456789abcdef-never-log-me-fedcba9876543210"
PLUGIN_ID = "stt_whisper"
# Fast retries: the core's backoff logic is exercised, not waited out.
FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02, max_retry_after=5.0)

# What the speech tests say. tiny.en gets these right with both espeak-ng's voice and
# Piper's; the checks look for a few content words, not the exact sentence.
KITCHEN = "please turn on the kitchen lights"
KITCHEN_WORDS = ["kitchen", "lights"]
# A made-up name: Whisper spells it right only when the prompt spells it for it.
NAME = "Quillothy"
NAME_SENTENCE = f"hello {NAME.lower()}, how are you"


def environ_for(**settings: object) -> dict[str, str]:
    """An environment holding ``settings`` by field name (``model=`` -> WHISPER_MODEL;
    ``api_key=`` -> OPENAI_API_KEY): how the operator would configure them."""
    environ = {}
    for name, value in settings.items():
        env = "OPENAI_API_KEY" if name == "api_key" else plugin.field(name).env
        assert env, f"{name} has no environment variable"
        if isinstance(value, bool):
            value = "1" if value else "0"
        elif isinstance(value, list | tuple):
            value = ",".join(value)
        environ[env] = str(value)
    return environ


def _piper_synthesizer():
    """The tts_piper plugin's synthesizer, when that plugin is installed and usable."""
    try:
        piper = importlib.import_module("hark_tts_piper")
    except ImportError:
        return None
    declared = getattr(piper, "plugin", None)
    if isinstance(declared, hark.Plugin):  # a declared (v2) plugin
        found = [p if isinstance(p, hark.Provider) else p() for p in declared.providers]
    else:
        found = []
        piper.register_synthesizers(found.append)
    for synthesizer in found:
        if isinstance(synthesizer, hark.Synthesizer) and synthesizer.unavailable_reason() is None:
            return synthesizer
    return None


async def _piper_clip(synthesizer, text: str) -> AudioClip:
    clips = [clip async for clip in synthesizer.synthesize(text)]
    first = clips[0]
    pcm = b"".join(convert(c, first.sample_rate, first.channels).pcm for c in clips)
    return AudioClip(pcm, first.sample_rate, first.channels)


def _espeak_clip(text: str) -> AudioClip:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "speech.wav"
        subprocess.run(
            ["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(out), text],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return read_wav(out.read_bytes())


class Speaker:
    """Real synthesized speech for the tests: Piper's voice when the tts_piper plugin is
    installed (Whisper hears it better), else espeak-ng. Clips come back as 16 kHz mono."""

    def __init__(self) -> None:
        # HARK_TEST_SPEECH=espeak-ng skips Piper (to check the fallback voice).
        wanted = os.environ.get("HARK_TEST_SPEECH", "").strip().lower()
        self._piper = None if wanted == "espeak-ng" else _piper_synthesizer()
        self._espeak = shutil.which("espeak-ng") is not None
        self._cache: dict[str, AudioClip] = {}
        self.source = "piper" if self._piper else "espeak-ng" if self._espeak else None

    def say(self, text: str) -> AudioClip:
        if text in self._cache:
            return self._cache[text]
        clip: AudioClip | None = None
        if self._piper is not None:
            try:
                # In a thread with its own loop: callers may be inside a running loop.
                with ThreadPoolExecutor(1) as pool:
                    clip = pool.submit(asyncio.run, _piper_clip(self._piper, text)).result(120)
            except Exception as exc:  # a broken voice: fall back to espeak-ng
                log.warning("Piper failed (%s); using espeak-ng", exc)
                self._piper, self.source = None, "espeak-ng" if self._espeak else None
        if clip is None:
            if not self._espeak:
                raise RuntimeError("neither tts_piper nor espeak-ng is available")
            clip = _espeak_clip(text)
        clip = convert(clip, 16_000, 1)
        assert clip.duration > 0.5 and rms(clip) > 300, f"{self.source} produced no speech"
        self._cache[text] = clip
        return clip
