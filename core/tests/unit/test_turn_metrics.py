"""The core's turn metrics store (hark.metrics): bounded, redacted, live; and the
dashboard's settings."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import types

import pytest

from hark.config import ConfigError, load_config
from hark.logs import register_secret
from hark.metrics import TurnClock, TurnMetrics, voice_stages

SECRET = "sk-test-metrics-0123456789abcdef"


@pytest.fixture(autouse=True)
def _secret():
    register_secret(SECRET)


def request(text="hello", **kw):
    return types.SimpleNamespace(text=text, guild_id=1, channel_id=2, kind="text", **kw)


def test_rings_are_bounded_and_counts_go_on():
    store = TurnMetrics(max_turns=5, max_events=3)
    for i in range(12):
        store.record_turn(kind="text", outcome="delivered", total_s=i)
        store.event("log", f"event {i}", level="WARNING")
    assert len(store.turns) == 5 and len(store.events) == 3
    # Newest first, and the oldest fell out.
    assert [t.total_s for t in store.recent_turns()] == [11, 10, 9, 8, 7]
    assert [e.message for e in store.recent_events()] == ["event 11", "event 10", "event 9"]
    assert store.turn_counts[("text", "delivered")] == 12
    assert store.event_counts["WARNING"] == 12


def test_long_messages_and_texts_are_cut():
    store = TurnMetrics(keep_text=True)
    event = store.event("log", "x" * 5000)
    turn = store.text_turn(request("y" * 5000), TurnClock(), "delivered", reply="z" * 5000)
    assert len(event.message) <= 500
    assert len(turn.request_text) <= 500 and len(turn.reply_text) <= 500


def test_secrets_are_redacted_in_events_errors_and_texts():
    store = TurnMetrics(keep_text=True)
    event = store.event("provider_error", f"401 from upstream with key {SECRET}")
    turn = store.text_turn(
        request(f"my key is {SECRET}"),
        TurnClock(),
        "failed",
        error=f"rejected {SECRET}",
        reply=f"said {SECRET}",
    )
    assert SECRET not in repr(event.as_dict()) and "***" in event.message
    assert SECRET not in repr(turn.as_dict())
    assert turn.request_text == "my key is ***"


def test_message_text_is_kept_only_when_turned_on():
    hidden = TurnMetrics()
    turn = hidden.text_turn(request("secret plans"), TurnClock(), "delivered", reply="ok")
    assert turn.request_text is None and turn.reply_text is None
    shown = TurnMetrics(keep_text=True)
    turn = shown.text_turn(request("secret plans"), TurnClock(), "delivered", reply="ok")
    assert (turn.request_text, turn.reply_text) == ("secret plans", "ok")


def test_a_text_turn_has_its_first_token_and_total():
    store = TurnMetrics()
    clock = TurnClock()
    time.sleep(0.01)
    clock.first()
    clock.first()  # only the first counts
    turn = store.text_turn(request(), clock, "delivered", provider="gen")
    assert turn.kind == "text" and turn.provider == "gen"
    assert 0.005 < turn.first_token_s <= turn.total_s
    assert list(turn.stages) == ["start", "first_delta", "reply_done"]
    assert turn.prompt_tokens is None and turn.completion_tokens is None
    console = store.text_turn(types.SimpleNamespace(kind="console"), TurnClock(), "delivered")
    assert console.kind == "console"


def test_a_voice_turn_is_relative_to_the_end_of_speech():
    t0 = time.monotonic()
    trace = {
        "speech_start": t0 - 1.5,
        "utterance_end": t0,
        "turn_end": t0 + 0.7,
        "transcribed": t0 + 0.8,
        "first_delta": t0 + 1.0,
        "first_audio": t0 + 1.2,
        "first_frame": t0 + 1.25,
        "paused_at": t0 + 1.5,
        "interrupted": t0 + 1.9,
        "reply_done": t0 + 2.0,
    }
    origin, stages = voice_stages(trace)
    assert origin == t0
    assert stages["speech_start"] == -1500.0 and stages["turn_end"] == 700.0
    assert list(stages) == sorted(stages, key=stages.get)  # in time order
    store = TurnMetrics()
    turn = store.voice_turn(request(), trace, "interrupted", provider="gen")
    assert turn.kind == "voice" and turn.barge_in
    assert turn.first_token_s == pytest.approx(1.0) and turn.total_s == pytest.approx(2.0)
    assert abs(turn.started_at - time.time()) < 5
    with pytest.raises(ValueError):
        store.record_turn(kind="voice", outcome="maybe")


def test_the_log_handler_records_warnings_and_up_redacted():
    store = TurnMetrics()
    logger = logging.getLogger("hark.provider.test_metrics")
    logger.setLevel(logging.DEBUG)
    store.attach_logging(logger)
    store.attach_logging(logger)  # once only
    try:
        logger.info("not notable")
        logger.warning("gen generate failed (429 rate limited); retry 1 in 0.50s")
        try:
            raise RuntimeError(f"boom {SECRET}")
        except RuntimeError:
            logger.exception("provider crashed")
    finally:
        store.detach_logging(logger)
    logger.warning("after detach")
    events = store.recent_events()
    assert [e.level for e in events] == ["ERROR", "WARNING"]
    assert events[1].kind == "rate_limit" and events[1].source == "hark.provider.test_metrics"
    assert events[0].kind == "provider_error"
    assert "RuntimeError: boom ***" in events[0].message and SECRET not in events[0].message


async def test_subscribers_hear_turns_and_events_from_any_thread():
    store = TurnMetrics()
    with store.subscribe() as updates:
        assert store.subscribers == 1
        store.record_turn(kind="text", outcome="delivered")
        thread = threading.Thread(target=store.event, args=("log", "from a thread"))
        thread.start()
        thread.join()
        kind, turn = await asyncio.wait_for(updates.get(), 2)
        assert kind == "turn" and turn.kind == "text"
        kind, event = await asyncio.wait_for(updates.get(), 2)
        assert kind == "event" and event.message == "from a thread"
    assert store.subscribers == 0
    store.event("log", "nobody listens")  # no subscriber: nothing queued, nothing breaks


async def test_a_slow_subscriber_keeps_only_the_newest():
    store = TurnMetrics()
    with store.subscribe(maxsize=3) as updates:
        for i in range(10):
            store.event("log", f"e{i}")
        got = [updates.queue.get_nowait()[1].message for _ in range(updates.queue.qsize())]
    assert got == ["e7", "e8", "e9"]


# -- the dashboard's settings ------------------------------------------------------------


def test_dashboard_is_off_by_default_and_on_by_env_or_table(tmp_path):
    assert load_config(environ={}, dotenv=None).dashboard is None
    config = load_config(
        environ={"HARK_DASHBOARD": "127.0.0.1:9000", "HARK_DASHBOARD_SHOW_TEXT": "yes"},
        dotenv=None,
    )
    assert config.dashboard == "127.0.0.1:9000" and config.dashboard_show_text
    toml = tmp_path / "bot.toml"
    toml.write_text('[dashboard]\ntoken = "from-the-file-123"\n')
    config = load_config(toml, environ={}, dotenv=None)
    assert config.dashboard == "127.0.0.1:8765"  # a [dashboard] table turns it on, localhost
    assert config.dashboard_token.get() == "from-the-file-123"
    assert "from-the-file-123" not in repr(config.dashboard_token)
    assert load_config(toml, environ={"HARK_DASHBOARD": "off"}, dotenv=None).dashboard is None


def test_a_bad_dashboard_address_is_a_config_error():
    with pytest.raises(ConfigError, match="HARK_DASHBOARD"):
        load_config(environ={"HARK_DASHBOARD": "localhost:http"}, dotenv=None)


def test_bot_console_stats_read_the_same_store():
    from hark.console import render_stats

    store = TurnMetrics()
    assert render_stats(store) == "(no turns yet)"
    store.record_turn(kind="console", outcome="delivered", first_token_s=0.012, total_s=0.5)
    text = render_stats(store)
    assert "turns: 1" in text and "#1 console delivered: first token 12 ms, total 500 ms" in text
