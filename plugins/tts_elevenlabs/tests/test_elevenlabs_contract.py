"""The core's Synthesizer contract, through the real ``elevenlabs`` client against the
loopback ElevenLabs server."""

from __future__ import annotations

import pytest
from hark_tts_elevenlabs import ElevenLabsSynthesizer

from hark.providers import RetryPolicy
from hark.testing.contracts import SynthesizerContract
from hark.testing.loopback import unused_port


class TestElevenLabsContract(SynthesizerContract):
    deadline = 20.0

    @pytest.fixture
    def synthesizer(self, make_synth) -> ElevenLabsSynthesizer:
        return make_synth()

    @pytest.fixture
    def broken_synthesizer(self, make_synth) -> ElevenLabsSynthesizer:
        synth = make_synth(base_url=f"http://127.0.0.1:{unused_port()}", timeout=2.0)
        synth.retry = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02)
        return synth
