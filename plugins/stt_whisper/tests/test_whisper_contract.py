"""The core's Transcriber contract, for both of the plugin's transcribers.

Local: the real bundled tiny.en (loaded once per session) on real synthesized speech.
OpenAI: the real ``openai`` client against the loopback fake of the transcription API.
"""

from __future__ import annotations

import pytest
from hark_stt_whisper import OpenAIWhisperTranscriber
from whisper_support import FAST_RETRY, KEY, KITCHEN, KITCHEN_WORDS, PLUGIN_ID

from hark.audio import convert
from hark.testing.contracts import TranscriberContract
from hark.testing.fakes import tone
from hark.testing.loopback import unused_port


class TestLocalWhisperContract(TranscriberContract):
    deadline = 60.0
    concurrency = 2  # two cores: more only queues behind the same model

    @pytest.fixture
    def transcriber(self, whisper_model, make_local):
        return make_local()

    @pytest.fixture
    def speech_clip(self, speaker):
        return speaker.say(KITCHEN), KITCHEN_WORDS

    @pytest.fixture
    def broken_transcriber(self, make_local, tmp_path):
        # A model directory that does not exist: a clear ConfigurationError.
        return make_local(model=str(tmp_path / "no-such-model"))


class TestOpenAIWhisperContract(TranscriberContract):
    deadline = 10.0

    @pytest.fixture
    def transcriber(self, server, make_remote):
        server.reply = KITCHEN
        server.delay = 0.05  # long enough for the cancellation test to cancel mid-request
        return make_remote()

    @pytest.fixture
    def speech_clip(self):
        # The fake server answers with KITCHEN whatever it hears; what it heard is
        # checked in test_whisper_remote.py.
        return convert(tone(1.0, 22_050), 22_050, 1), KITCHEN_WORDS

    @pytest.fixture
    async def broken_transcriber(self):
        # Nothing listens on that port: every call fails to connect.
        base_url = f"http://127.0.0.1:{unused_port()}/v1"
        transcriber = OpenAIWhisperTranscriber(
            environ={"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": base_url}
        )
        transcriber.plugin_id = PLUGIN_ID
        transcriber.retry = FAST_RETRY
        yield transcriber
        await transcriber.aclose()


class TestOpenAIWhisperContractAgainstFailingServer(TranscriberContract):
    """The error-path contract again, with a server that answers but always fails."""

    deadline = 10.0

    @pytest.fixture
    def transcriber(self, make_remote):
        return make_remote()

    @pytest.fixture
    def broken_transcriber(self, server, make_remote):
        server.fail_next(500, times=100)
        return make_remote()
