"""The turn-detector contract holds for the core's webrtcvad detector."""

from __future__ import annotations

import pytest

from hark.testing.contracts import TurnDetectorContract
from hark.voice.turns import WebRTCTurnDetector


class TestWebRTCTurnDetectorContract(TurnDetectorContract):
    deadline = 5.0

    @pytest.fixture
    def turn_detector(self) -> WebRTCTurnDetector:
        detector = WebRTCTurnDetector()
        detector.plugin_id = "voice"  # as the built-in voice plugin registers it
        return detector
