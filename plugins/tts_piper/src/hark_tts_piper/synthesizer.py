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
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hark import AudioClip, ConfigurationError, RetryPolicy, Synthesizer
from hark.audio import DISCORD_CHANNELS, DISCORD_RATE, StreamResampler, remix, to_array
from hark_tts_piper.settings import MAX_SPEED, MIN_SPEED, PiperSettings
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

    ``model_path`` / ``config_path`` override the ``model`` / ``config`` settings
    (``PIPER_MODEL`` / ``PIPER_CONFIG``), which override the bundled voice. Per-server
    settings (:class:`PiperSettings`, handed to each call): ``length_scale`` (speed),
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
    # Used outside a bot (tests, `bot prepare`); in the bot the plugin's declaration.
    settings_model = PiperSettings

    def __init__(
        self,
        model_path: str | Path | None = None,
        config_path: str | Path | None = None,
        *,
        first_piece_chars: int = FIRST_PIECE_CHARS,
        max_piece_chars: int = MAX_PIECE_CHARS,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """``environ`` replaces the environment as the settings' env layer."""
        super().__init__()
        self.environ = environ
        self.model_path = model_path
        self.config_path = config_path
        self.first_piece_chars = first_piece_chars
        self.max_piece_chars = max_piece_chars
        self._workers: set[_Worker] = set()
        self._workers_lock = threading.Lock()

    # -- the voice -----------------------------------------------------------

    def bot_wide(self) -> PiperSettings:
        """The bot-wide settings (the voice files; the speed and speaker every server
        starts from)."""
        resolved = self.resolve()
        assert resolved is not None
        return resolved.values

    def paths(self) -> VoicePaths:
        """The voice files in force now: the paths given to this synthesizer, else the
        bot-wide ``model`` / ``config`` settings (read on each call, so a changed
        setting or environment needs no restart), else the bundled voice."""
        if self.model_path is not None or self.config_path is not None:
            return resolve_paths(self.model_path, self.config_path)
        resolved = self.resolve()
        assert resolved is not None
        settings = resolved.values
        source = resolved.origin("model" if settings.model else "config").label
        return resolve_paths(settings.model or None, settings.config or None, source=source)

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

    def length_scale(self, voice: LoadedVoice, settings: PiperSettings) -> float:
        value = settings.length_scale
        return voice.default_length_scale if value is None else value

    def speed(self, voice: LoadedVoice, settings: PiperSettings) -> float:
        """How much faster than the voice's default these settings make it (1.0 = as made)."""
        return voice.default_length_scale / self.length_scale(voice, settings)

    def noise_scale(self, voice: LoadedVoice, settings: PiperSettings) -> float:
        value = settings.noise_scale
        return voice.default_noise_scale if value is None else value

    def speaker_id(
        self, voice: LoadedVoice, settings: PiperSettings, name: str | None = None
    ) -> int | None:
        """The speaker: ``name`` (a value being checked), else the ``speaker`` setting.

        Single-speaker voices ignore it. A multi-speaker voice takes a speaker name
        or number."""
        wanted = name if name is not None else settings.speaker
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

    def synthesis_config(self, voice: LoadedVoice, settings: PiperSettings) -> Any:
        from piper import SynthesisConfig

        return SynthesisConfig(
            speaker_id=self.speaker_id(voice, settings),
            length_scale=self.length_scale(voice, settings),
            noise_scale=self.noise_scale(voice, settings),
        )

    async def check_setting(self, key: str, value: Any) -> Any:
        """`!config tts_piper ...`: what the model can't check alone. A speed outside
        0.5× to 2× of the voice's own, a speaker the voice lacks, or voice files that
        are not there are refused (each would spoil every later reply)."""
        if key in ("model", "config"):
            current = self.bot_wide()
            model = value if key == "model" else current.model
            config = value if key == "config" else current.config
            problem = resolve_paths(model or None, config or None).problem()
            if problem:
                raise ValueError(problem)
            return value
        if value is None or key not in ("length_scale", "speaker"):
            return value
        voice = await self.load()  # a ConfigurationError: "couldn't check"
        if key == "length_scale":
            own = voice.default_length_scale
            if not MIN_SPEED <= own / value <= MAX_SPEED:
                raise ValueError(
                    f"a length_scale of {value:g} makes `{voice.name}` speak at"
                    f" {own / value:.2f}×; keep it between {own / MAX_SPEED:g} and"
                    f" {own / MIN_SPEED:g} (speed {MIN_SPEED:g}× to {MAX_SPEED:g}×)"
                )
            return value
        if voice.num_speakers <= 1:
            raise ValueError(f"the Piper voice `{voice.name}` has a single speaker")
        try:
            self.speaker_id(voice, self.bot_wide(), value)
        except ConfigurationError as exc:
            raise ValueError(exc.message) from None
        return value

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
        self, text: str, *, guild_id: int | None, settings: PiperSettings
    ) -> AsyncIterator[AudioClip]:
        """``settings`` are this server's (the core resolved them for the call)."""
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
        config = self.synthesis_config(loaded, settings)
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


async def speak_all(synthesizer: PiperSynthesizer, text: str, **kwargs: Any) -> list[AudioClip]:
    """Every clip of ``synthesizer.synthesize(text)`` (for commands and scripts)."""
    async with contextlib.aclosing(synthesizer.synthesize(text, **kwargs)) as stream:
        return [clip async for clip in stream]
