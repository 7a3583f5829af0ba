"""hark.logs: secrets never reach a formatted log line, tracebacks included."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from hark import logs
from hark.logs import (
    RedactingFormatter,
    redact,
    register_environment_secrets,
    register_secret,
    setup_logging,
)

KEY = "sk-or-v1-0123456789abcdef"
TOKEN = "MTIzNDU2.Gabcde.zyxwvutsrqponm"


@pytest.fixture(autouse=True)
def fresh_secrets(monkeypatch) -> None:
    monkeypatch.setattr(logs, "_secrets", set())


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("hark.test.redaction")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)
    logger.propagate = True


def test_registered_secrets_are_redacted() -> None:
    register_secret(KEY)
    assert redact(f"calling with key={KEY}&x=1 and again {KEY}") == (
        "calling with key=***&x=1 and again ***"
    )
    assert redact("nothing secret here") == "nothing secret here"


def test_short_and_empty_values_are_not_registered() -> None:
    for value in ("", None, "abc", "12345"):
        register_secret(value)
    assert redact("abc 12345 and more") == "abc 12345 and more"
    register_secret("123456")
    assert redact("x 123456 y") == "x *** y"


def test_longest_secret_first() -> None:
    register_secret("abcdef")
    register_secret("abcdefghijkl")
    assert redact("abcdefghijkl") == "***", "no tail of the longer secret is left"


def test_environment_secrets_by_name() -> None:
    register_environment_secrets(
        {
            "OPENROUTER_API_KEY": KEY,
            "DISCORD_BOT_TOKEN": TOKEN,
            "AZURE_SPEECH_SECRET": "azure-secret-value",
            "DB_PASSWORD": "hunter2hunter2",
            "HOME": "/home/somebody",
            "BOT_PREFIX": "!!!!!!!",
        }
    )
    text = redact(f"{KEY} {TOKEN} azure-secret-value hunter2hunter2 /home/somebody !!!!!!!")
    assert text == "*** *** *** *** /home/somebody !!!!!!!"


def test_explicit_empty_environ_registers_nothing(monkeypatch) -> None:
    monkeypatch.setenv("HARK_TEST_ONLY_TOKEN", "process-env-token-value")
    register_environment_secrets({})
    assert redact("process-env-token-value") == "process-env-token-value"


def test_formatter_redacts_messages_args_and_tracebacks(capture) -> None:
    logger, stream = capture
    register_secret(KEY)
    register_secret(TOKEN)
    logger.info("using key %s", KEY)
    try:
        try:
            raise ConnectionError(f"401 for https://api.example/v1?key={KEY}")
        except ConnectionError as inner:
            raise RuntimeError(f"login failed with token {TOKEN}") from inner
    except RuntimeError:
        logger.exception("request failed")
    output = stream.getvalue()
    assert "Traceback" in output and "ConnectionError" in output and "RuntimeError" in output
    assert KEY not in output and TOKEN not in output
    assert output.count("***") >= 3


def test_setup_logging_installs_the_redacting_formatter() -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    discord_level = logging.getLogger("discord").level
    stream = io.StringIO()
    try:
        setup_logging("debug", stream=stream)
        register_secret(TOKEN)
        assert root.level == logging.DEBUG
        assert logging.getLogger("discord").level == logging.INFO
        logging.getLogger("hark.test.setup").warning("token is %s", TOKEN)
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)
        logging.getLogger("discord").setLevel(discord_level)
    line = stream.getvalue()
    assert "token is ***" in line and TOKEN not in line
    assert "WARNING" in line and "hark.test.setup" in line
