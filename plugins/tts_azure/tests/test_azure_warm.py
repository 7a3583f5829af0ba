"""warm(): one cheap request (HEAD on the voice list) opens the connection pool; a
failure never escapes and never shows the key."""

from __future__ import annotations

import logging

from azure_support import KEY
from hark_tts_azure.synthesizer import VOICES_PATH

from hark.testing.loopback import unused_port


async def test_warm_opens_the_connection(make_synth, azure):
    synth = make_synth()
    await synth.warm()
    (request,) = azure.requests
    assert (request.method, request.path) == ("HEAD", VOICES_PATH)
    assert request.key == KEY
    assert azure.synthesis_requests == []  # nothing synthesized (or paid for)


async def test_warm_with_the_service_down_does_not_raise(make_synth, caplog):
    synth = make_synth(endpoint=f"http://127.0.0.1:{unused_port()}")
    with caplog.at_level(logging.DEBUG, logger="hark.provider"):
        await synth.warm()
    assert "warm-up" in caplog.text and KEY not in caplog.text


async def test_warm_with_an_error_status_does_not_raise(make_synth, azure):
    azure.fail_next(503)
    await make_synth().warm()
    assert len(azure.requests) == 1


async def test_warm_without_a_key_does_nothing(make_synth, azure):
    await make_synth(api_key="").warm()
    assert azure.requests == []
