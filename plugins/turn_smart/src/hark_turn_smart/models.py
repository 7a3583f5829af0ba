"""The two ONNX models, run with onnxruntime directly.

- **Silero VAD** (v5, MIT): a speech probability for each 512-sample window of
  16 kHz audio (32 ms), with a small recurrent state carried from one window to
  the next, so each speaker keeps their own :class:`SileroState`.
- **Smart Turn v3.2** (CPU build, int8, BSD-2): the probability that the audio
  so far (up to 8 s of 16 kHz) is a *complete* turn, from Whisper log-mel
  features (:mod:`hark_turn_smart.features`).

Both files ship inside this package (``model_files/``, the same files pipecat-ai
1.14 ships; licences in ``model_files/LICENSES.md``): nothing is downloaded, and
pipecat-ai itself is not a dependency (see the README for why).

An ``onnxruntime.InferenceSession`` may be run from several threads at once,
so one :class:`Models` serves every speaker: Silero from voice-recv's router
thread, Smart Turn from the detector's worker thread.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # numpy (and the feature extraction, which builds its filters with it) loads with
    # the first speaker or the models, not with the plugin.
    import numpy as np

MODEL_DIR = Path(__file__).with_name("model_files")
SILERO_FILE = MODEL_DIR / "silero_vad.onnx"
SMART_TURN_FILE = MODEL_DIR / "smart-turn-v3.2-cpu.onnx"

VAD_RATE = 16_000
VAD_WINDOW = 512  # samples per Silero window at 16 kHz (32 ms): the model's fixed size
_VAD_CONTEXT = 64  # samples of the previous window Silero v5 expects in front of each one
# Below this RMS (float, full scale 1.0) a window is digital silence: probability 0
# without running the model (Discord's decoded silence frames are exact zeros).
SILENCE_RMS = 1e-4


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    # Both models are small: one thread each avoids fighting the bot (and each other)
    # for the cores; Smart Turn's thread count is configurable for bigger machines.
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def _zeros(*shape: int) -> np.ndarray:
    import numpy as np

    return np.zeros(shape, dtype=np.float32)


@dataclass(slots=True)
class SileroState:
    """One speaker's recurrent state and the tail of their previous window."""

    state: np.ndarray = field(default_factory=lambda: _zeros(2, 1, 128))
    context: np.ndarray = field(default_factory=lambda: _zeros(_VAD_CONTEXT))

    def reset(self) -> None:
        self.state = _zeros(2, 1, 128)
        self.context = _zeros(_VAD_CONTEXT)


class Models:
    """Both sessions, loaded once (blocking: call from a worker thread)."""

    def __init__(
        self,
        silero_path: Path = SILERO_FILE,
        smart_turn_path: Path = SMART_TURN_FILE,
        *,
        smart_turn_threads: int = 1,
    ) -> None:
        import numpy as np

        started = time.perf_counter()
        self.silero_path = Path(silero_path)
        self.smart_turn_path = Path(smart_turn_path)
        self._silero = _session(self.silero_path, 1)
        self._smart_turn = _session(self.smart_turn_path, smart_turn_threads)
        self.load_seconds = time.perf_counter() - started
        self._sr = np.array(VAD_RATE, dtype=np.int64)
        # Smart Turn's feature extraction allocates ~10 MB per call; one at a time is plenty
        # (the detector's single worker thread already serialises them).
        self._turn_lock = threading.Lock()

    def speech_probability(self, window: np.ndarray, state: SileroState) -> float:
        """Silero's probability that a 512-sample float32 window is speech; updates ``state``."""
        import numpy as np

        if float(np.sqrt(np.mean(window * window))) < SILENCE_RMS:
            # Keep the context continuous so the next real window sees what preceded it.
            state.context = window[-_VAD_CONTEXT:].copy()
            return 0.0
        x = np.concatenate([state.context, window])[None, :]
        prob, new_state = self._silero.run(None, {"input": x, "state": state.state, "sr": self._sr})
        state.state = new_state
        state.context = window[-_VAD_CONTEXT:].copy()
        return float(prob[0, 0])

    def completeness(self, audio16k: np.ndarray) -> float:
        """Smart Turn's probability that ``audio16k`` (float32 at 16 kHz, the turn so far
        with its trailing silence) is a finished turn. Only the last 8 s count."""
        import numpy as np

        from hark_turn_smart import features

        with self._turn_lock:
            feats = features.log_mel(features.fit(audio16k))[None]
            (prob,) = self._smart_turn.run(None, {"input_features": feats})
        return float(np.asarray(prob).reshape(-1)[0])

    def warm(self) -> None:
        """One tiny inference on each model, so the first real one is as fast as the rest."""
        import numpy as np

        rng = np.random.default_rng(0)
        self.speech_probability(
            (rng.standard_normal(VAD_WINDOW) * 0.01).astype(np.float32), SileroState()
        )
        self.completeness((rng.standard_normal(VAD_RATE // 2) * 0.01).astype(np.float32))


def missing_files(*paths: Path) -> list[Path]:
    """Which of ``paths`` are not files (a broken install)."""
    return [p for p in paths if not p.is_file()]
