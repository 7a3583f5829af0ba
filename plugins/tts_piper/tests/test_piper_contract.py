"""The SynthesizerContract, run against the real bundled Piper voice."""

from __future__ import annotations

import pytest

from hark.testing.contracts import SynthesizerContract


class TestPiperContract(SynthesizerContract):
    # Local inference on two cores: generous, but a hang still fails.
    deadline = 60.0

    @pytest.fixture
    def synthesizer(self, make_synthesizer):
        return make_synthesizer()

    @pytest.fixture
    def broken_synthesizer(self, make_synthesizer, tmp_path):
        # A voice file that is not there: a ConfigurationError, not a crash or a hang.
        return make_synthesizer(model_path=tmp_path / "no-such-voice.onnx")
