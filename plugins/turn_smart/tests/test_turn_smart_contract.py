"""The core's turn-detector contract, on the real bundled models (loaded once per
session by conftest's ``session_detector``)."""

from __future__ import annotations

import pytest
from hark_turn_smart import SmartSpeakerTurns, SmartTurnDetector

from hark import SpeakerTurns, TurnUpdate
from hark.testing.contracts import TurnDetectorContract


class TestSmartTurnContract(TurnDetectorContract):
    deadline = 30.0

    @pytest.fixture
    def turn_detector(self, detector: SmartTurnDetector) -> SmartTurnDetector:
        return detector

    @pytest.fixture
    def broken_turn_detector(self, tmp_path) -> SmartTurnDetector:
        # A broken install: the Silero model file is gone.
        return SmartTurnDetector(silero_path=tmp_path / "missing.onnx")

    def settle(self, turns: SpeakerTurns, update: TurnUpdate) -> None:
        # Smart Turn judges a pause on the detector's worker thread: let simulated time
        # wait for its verdict (the next feed/poll acts on it), as smart_turn_speech does.
        if update.kind == "pause":
            assert isinstance(turns, SmartSpeakerTurns)
            turns.wait_verdict()
