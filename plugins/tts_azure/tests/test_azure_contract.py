"""The core's Synthesizer contract, run against AzureSynthesizer and the loopback server."""

from __future__ import annotations

import pytest
from azure_support import FAST_RETRY, KEY, PLUGIN_ID
from hark_tts_azure import AzureSynthesizer

from hark.testing.contracts import SynthesizerContract
from hark.testing.loopback import unused_port


class TestAzureSynthesizerContract(SynthesizerContract):
    deadline = 10.0

    @pytest.fixture
    def synthesizer(self, azure, make_synth) -> AzureSynthesizer:
        # Paced like a real service, so a stream can be closed or cancelled mid-way.
        azure.chunk_delay = 0.002
        return make_synth()

    @pytest.fixture
    async def broken_synthesizer(self):
        # Nothing listens on that port: every call fails to connect.
        synthesizer = AzureSynthesizer(
            api_key=KEY, endpoint=f"http://127.0.0.1:{unused_port()}", environ={}
        )
        synthesizer.plugin_id = PLUGIN_ID
        synthesizer.retry = FAST_RETRY
        yield synthesizer
        await synthesizer.aclose()


class TestAzureContractAgainstFailingServer(SynthesizerContract):
    """The error-path contract again, with a server that answers but always fails."""

    deadline = 10.0

    @pytest.fixture
    def synthesizer(self, make_synth) -> AzureSynthesizer:
        return make_synth()

    @pytest.fixture
    def broken_synthesizer(self, azure, make_synth) -> AzureSynthesizer:
        azure.fail_next(503, times=100, endpoint="any")
        return make_synth()


class TestAzureContractWithWrongKey(SynthesizerContract):
    """...and with a key the server rejects (401, not retried)."""

    deadline = 10.0

    @pytest.fixture
    def synthesizer(self, make_synth) -> AzureSynthesizer:
        return make_synth()

    @pytest.fixture
    def broken_synthesizer(self, make_synth) -> AzureSynthesizer:
        return make_synth(api_key="0" * 32)
