"""warm(): one cheap request (the default voice) opens the connection pool; a failure
never escapes and never shows the key."""

from __future__ import annotations

import logging

from elevenlabs_support import KEY, RACHEL

from hark.testing.loopback import unused_port


async def test_warm_opens_the_connection(make_synth, server):
    synth = make_synth()
    await synth.warm()
    (request,) = server.requests
    assert (request.method, request.path) == ("GET", f"/v1/voices/{RACHEL}")
    assert request.api_key == KEY
    assert server.tts_requests == []  # nothing synthesized (or paid for)


async def test_warm_with_the_service_down_does_not_raise(make_synth, caplog):
    synth = make_synth(base_url=f"http://127.0.0.1:{unused_port()}")
    with caplog.at_level(logging.DEBUG, logger="hark.provider"):
        await synth.warm()
    assert "warm-up" in caplog.text and KEY not in caplog.text


async def test_warm_with_an_error_status_does_not_raise(make_synth, server):
    server.fail_next(500)
    await make_synth().warm()
    assert len(server.requests) == 1


async def test_warm_without_a_key_does_nothing(make_synth, server):
    await make_synth(api_key="").warm()
    assert server.requests == []
