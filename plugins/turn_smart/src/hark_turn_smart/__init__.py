"""Smart Turn: voice turn detection with Silero VAD and Smart Turn v3.

Silero tells speech from noise frame by frame; at each short pause Smart Turn
(an audio model of how people finish sentences) says whether the turn is
complete. A complete sentence ends the turn ~200 ms after the speaker stops; an
incomplete one ("I want to go to the…") is given up to ``max_wait_ms`` to go on.
Both ONNX models ship inside this package: nothing is downloaded. Its settings are
shown and changed with ``!config turn_smart``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import hark
from hark_turn_smart.cog import SmartTurnCog
from hark_turn_smart.detector import SmartSpeakerTurns, SmartTurnDetector
from hark_turn_smart.models import SILERO_FILE, SMART_TURN_FILE, Models
from hark_turn_smart.settings import SmartTurnSettings, TurnConfig, build

__all__ = [
    "SILERO_FILE",
    "SMART_TURN_FILE",
    "Models",
    "SmartSpeakerTurns",
    "SmartTurnCog",
    "SmartTurnDetector",
    "SmartTurnSettings",
    "TurnConfig",
    "build",
    "plugin",
    "prepare",
]


def prepare(progress: Callable[..., None] | None = None) -> None:
    """``bot prepare``: load both bundled models and run each once, so a broken install
    shows up before the bot runs. Nothing is downloaded."""
    say = progress or (lambda message, fraction=None: None)
    detector = SmartTurnDetector()
    problem = detector.unavailable_reason()
    if problem:
        raise RuntimeError(problem)
    say(f"models: {SILERO_FILE.name}, {SMART_TURN_FILE.name}", 0.0)
    models = detector.models()
    say(f"loaded in {models.load_seconds:.2f}s", 0.5)
    started = time.perf_counter()
    models.warm()
    say(f"first inference in {time.perf_counter() - started:.2f}s", 1.0)


plugin = hark.Plugin(
    description="Voice turn detection with Silero VAD and Smart Turn v3 (bundled, offline)",
    settings=SmartTurnSettings,
    # Registering costs nothing: the models load on warm() (a voice session starting)
    # or on the first frame.
    providers=[SmartTurnDetector],
    cogs=[SmartTurnCog],
    prepare=prepare,
)
