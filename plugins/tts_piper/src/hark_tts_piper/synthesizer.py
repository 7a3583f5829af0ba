"""``PiperSynthesizer``: Piper speaks in a worker thread; each sentence reaches the event
loop as soon as it is synthesized, already at Discord's 48 kHz stereo.

    worker thread                               event loop
    for piece in pieces:           ──queue──▶   _impl yields AudioClip
        check the stop flag                     (consumer closes the stream:
        voice.synthesize(piece)                  the stop flag is set, the
        StreamResampler.feed(...)                worker ends at the next piece)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from hark import AudioClip, Synthesizer
from hark.audio import DISCORD_CHANNELS, DISCORD_RATE, StreamResampler, remix, to_array
from hark.providers.errors import ConfigurationError
from hark.providers.policy import RetryPolicy
from hark_tts_piper.text import FIRST_PIECE_CHARS, MAX_PIECE_CHARS, split_for_speech
from hark_tts_piper.voice import (
    LoadedVoice,
    VoicePaths,
    cached_voice,
    load_voice,
    resolve_paths,
    warm_voice,
)

log = logging.getLogger("hark.provider.tts_piper")

#: Settings in the plugin's namespace (``[plugin.tts_piper]`` in bot.toml, or per server).
#: ``None`` means "the voice's own default" (from its JSON config).
DEFAULT_SETTINGS: dict[str, Any] = {"length_scale": None, "noise_scale": None, "speaker": None}

#: ``!piper speed`` accepts this range (speed = voice's length_scale / length_scale).
MIN_SPEED, MAX_SPEED = 0.5, 2.0

# What text with nothing to pronounce ("...", a lone code block) sounds like: a pause.
PAUSE_SECONDS = 0.25

_DONE = object()
_worker_ids = itertools.count(1)


class _Worker:
    """One synthesis stream: a thread that feeds ``pieces`` to Piper one at a time and
    hands each converted clip to the event loop through an asyncio queue."""

    def __init__(
        self,
        voice: LoadedVoice,
        pieces: Sequence[str],
        syn_config: Any,
        loop: asyncio.AbstractEventLoop,
        on_exit: Callable[[_Worker], None],
    ) -> None:
        self.voice = voice
        self.pieces = list(pieces)
        self.syn_config = syn_config
        self.loop = loop
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.stop = threading.Event()
        self.pieces_done = 0
        self._on_exit = on_exit
        self.thread = threading.Thread(
            target=self._run, name=f"piper-synth-{next(_worker_ids)}", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def _emit(self, item: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the event loop is closed: nobody is listening any more
            self.stop.set()

    def _run(self) -> None:
        final: Any = None
        try:
            final = self._synthesize()
        except BaseException as exc:  # handed to the event loop, raised there
            final = exc
        finally:
            # Leave the active set before the consumer hears that the stream ended.
            self._on_exit(self)
            if final is not None and not self.stop.is_set():
                self._emit(final)

    def _synthesize(self) -> object | None:
        """Feed every piece to Piper; returns ``_DONE``, or None when stopped early."""
        # Resample the mono voice, then duplicate it: half the work of resampling two
        # channels, and both channels stay sample-identical.
        resampler = StreamResampler(
            self.voice.sample_rate, 1, out_rate=DISCORD_RATE, out_channels=1
        )
        for piece in self.pieces:
            if self.stop.is_set():
                return None
            chunks = iter(self.voice.piper.synthesize(piece, syn_config=self.syn_config))
            while True:
                # One inference at a time per voice: concurrent streams take turns
                # sentence by sentence instead of slowing each other down.
                with self.voice.lock:
                    if self.stop.is_set():
                        return None
                    chunk = next(chunks, None)
                if chunk is None:
                    break
                if self.stop.is_set():
                    return None
                clip = _stereo(resampler.feed(chunk.audio_int16_bytes))
                if clip.pcm:
                    self._emit(clip)
            self.pieces_done += 1
        tail = _stereo(resampler.flush())
        if tail.pcm:
            self._emit(tail)
        return _DONE


class PiperSynthesizer(Synthesizer):
    """Offline text to speech with Piper (default voice: en_US-joe-medium).

    ``model_path`` / ``config_path`` override ``PIPER_MODEL`` / ``PIPER_CONFIG``, which
    override the bundled voice. Per-server settings: ``length_scale`` (speed),
    ``noise_scale`` and ``speaker`` (multi-speaker voices); ``None`` keeps the voice's own.
    """

    # The plugin id is the provider id: `!plugins use synthesize tts_piper`.
    name = ""
    sample_rate = DISCORD_RATE
    channels = DISCORD_CHANNELS
    # Below a configured cloud voice (priority 0), above nothing: the offline fallback.
    default_priority = -10
    # Per clip; the first one includes loading the voice (a few seconds on a cold disk).
    timeout = 60.0
    # Piper is local and deterministic: what failed once fails again.
    retry = RetryPolicy(attempts=1)
    default_settings: ClassVar[dict[str, Any]] = DEFAULT_SETTINGS

    def __init__(
        self,
        model_path: str | Path | None = None,
        config_path: str | Path | None = None,
        *,
        first_piece_chars: int = FIRST_PIECE_CHARS,
        max_piece_chars: int = MAX_PIECE_CHARS,
    ) -> None:
        super().__init__()
        self.model_path = model_path
        self.config_path = config_path
        self.first_piece_chars = first_piece_chars
        self.max_piece_chars = max_piece_chars
        self._workers: set[_Worker] = set()
        self._workers_lock = threading.Lock()

    # -- the voice -----------------------------------------------------------

    def paths(self) -> VoicePaths:
        """The voice files in force now (environment read on each call)."""
        return resolve_paths(self.model_path, self.config_path)

    def unavailable_reason(self) -> str | None:
        try:
            return self.paths().problem()
        except ConfigurationError as exc:
            return exc.message

    def loaded_voice(self) -> LoadedVoice | None:
        """The voice if this process has loaded it already (never loads)."""
        try:
            return cached_voice(self.paths())
        except ConfigurationError:
            return None

    async def load(self) -> LoadedVoice:
        """The voice, loaded off the event loop on first use and cached per process."""
        paths = self.paths()
        voice = cached_voice(paths)
        if voice is not None:
            return voice
        return await asyncio.to_thread(load_voice, paths)

    async def warm(self) -> None:
        """Load the voice and synthesize one short word, both in a worker thread, so
        the first reply is as fast as the next ones. Once per voice and process: later
        calls return at once. Never raises (a broken voice is logged; the first real
        call reports it)."""
        try:
            voice = await self.load()
            if not voice.warmed:
                await asyncio.to_thread(warm_voice, voice)
        except Exception as exc:
            log.debug("Piper warm-up failed: %s", exc)

    def load_sync(self) -> LoadedVoice:
        """Blocking :meth:`load`, for ``prepare()`` and scripts."""
        return load_voice(self.paths())

    # -- settings --------------------------------------------------------------

    def length_scale(self, voice: LoadedVoice, guild_id: int | None) -> float:
        value = self.setting("length_scale", guild_id)
        return voice.default_length_scale if value is None else _positive("length_scale", value)

    def speed(self, voice: LoadedVoice, guild_id: int | None) -> float:
        """How much faster than the voice's default this server hears it (1.0 = as made)."""
        return voice.default_length_scale / self.length_scale(voice, guild_id)

    def noise_scale(self, voice: LoadedVoice, guild_id: int | None) -> float:
        value = self.setting("noise_scale", guild_id)
        return voice.default_noise_scale if value is None else _positive("noise_scale", value)

    def speaker_id(self, voice: LoadedVoice, guild_id: int | None, name: str | None) -> int | None:
        """The speaker for this call: ``voice`` argument, else the ``speaker`` setting.

        Single-speaker voices ignore it (the core may pass a voice name meant for
        another provider). A multi-speaker voice takes a speaker name or number."""
        wanted = name if name is not None else self.setting("speaker", guild_id)
        if voice.num_speakers <= 1 or wanted is None or str(wanted).strip() == "":
            return None
        speakers = voice.speakers
        text = str(wanted).strip()
        if text in speakers:
            return speakers[text]
        if text.isdigit() and int(text) < voice.num_speakers:
            return int(text)
        known = ", ".join(sorted(speakers)[:20]) or f"0-{voice.num_speakers - 1}"
        raise ConfigurationError(f"the Piper voice has no speaker `{text}` (one of: {known})")

    def synthesis_config(
        self, voice: LoadedVoice, guild_id: int | None, speaker: str | None = None
    ) -> Any:
        from piper import SynthesisConfig

        return SynthesisConfig(
            speaker_id=self.speaker_id(voice, guild_id, speaker),
            length_scale=self.length_scale(voice, guild_id),
            noise_scale=self.noise_scale(voice, guild_id),
        )

    # -- synthesis -------------------------------------------------------------

    @property
    def active_workers(self) -> list[threading.Thread]:
        """Threads still synthesizing (a closed stream's worker ends at its next piece)."""
        with self._workers_lock:
            return [w.thread for w in self._workers]

    def _forget(self, worker: _Worker) -> None:
        with self._workers_lock:
            self._workers.discard(worker)

    def pieces(self, text: str) -> list[str]:
        """How ``text`` is fed to Piper: cleaned, cut into sentences and clauses."""
        return split_for_speech(
            text, first_chars=self.first_piece_chars, max_chars=self.max_piece_chars
        )

    async def _impl(
        self, text: str, *, voice: str | None, guild_id: int | None
    ) -> AsyncIterator[AudioClip]:
        if not text.strip():
            return
        pieces = self.pieces(text)
        if not pieces:
            # Only punctuation or markup: nothing to pronounce, but the text was not
            # blank, so it is rendered as what it is, a short pause.
            frames = round(PAUSE_SECONDS * self.sample_rate)
            yield AudioClip(bytes(frames * 2 * self.channels), self.sample_rate, self.channels)
            return
        loaded = await self.load()
        config = self.synthesis_config(loaded, guild_id, voice)
        worker = _Worker(loaded, pieces, config, asyncio.get_running_loop(), self._forget)
        with self._workers_lock:
            self._workers.add(worker)
        worker.start()
        log.debug("synthesizing %d piece(s) with %s", len(pieces), loaded.name)
        try:
            while True:
                item = await worker.queue.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            # Closed early (barge-in, cancellation, an error downstream): stop the
            # worker at its next piece. It is not awaited: a sentence in inference
            # can't be interrupted, and the caller should not wait for it.
            worker.stop.set()


def _stereo(clip: AudioClip) -> AudioClip:
    samples = remix(to_array(clip.pcm, 1), DISCORD_CHANNELS)
    return AudioClip(samples.tobytes(), clip.sample_rate, DISCORD_CHANNELS)


def _positive(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise ConfigurationError(f"the Piper setting `{name}` must be a positive number")
    return number


async def speak_all(synthesizer: PiperSynthesizer, text: str, **kwargs: Any) -> list[AudioClip]:
    """Every clip of ``synthesizer.synthesize(text)`` (for commands and scripts)."""
    async with contextlib.aclosing(synthesizer.synthesize(text, **kwargs)) as stream:
        return [clip async for clip in stream]
