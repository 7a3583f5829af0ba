"""Keep discord.py's gateway from killing the bot or flooding its log.

discord.py trusts gateway payloads: a parser that meets an unexpected shape (as
Spacebar and other Discord-compatible servers send) raises out of ``poll_event``,
through ``Client.connect`` and ``Client.start``, and the process exits. And each
reconnect, which is routine, is logged at ERROR with the whole chained traceback.

- :func:`guard_parsers`: a parser that fails logs one WARNING naming the event and
  drops that event; the connection carries on.
- :func:`install_log_filters`: reconnect records become one WARNING with the cause;
  the traceback is re-logged at DEBUG.
- :func:`keep_connected`: an unexpected exception out of ``Client.connect`` is
  retried with backoff, like a network drop, instead of ending ``start``.
- :func:`raised_outside_hark`: lets ``bot run`` print one line, not a traceback,
  for what still escapes from inside discord.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import discord
from discord.backoff import ExponentialBackoff
from discord.state import ConnectionState

log = logging.getLogger(__name__)

# A READY that cannot be parsed must not be dropped: the client would never become
# ready. It fails the connection instead, which keep_connected retries.
_UNGUARDED_EVENTS = frozenset({"READY"})

# Never retried: discord.py raises these on purpose (bad token, privileged intents
# not enabled, a close code it will not reconnect on: 4004, 4010-4014; it has closed
# the client by then).
_FATAL = (discord.LoginFailure, discord.PrivilegedIntentsRequired, discord.ConnectionClosed)

# discord.py's reconnect messages (logged with a traceback at ERROR) -> what Hark logs
# instead at WARNING; the cause is appended as the last argument.
_REWRITES = {
    # discord/client.py, Client.connect
    "Attempting a reconnect in %.2fs": "gateway connection lost; reconnecting in %.2fs (%s)",
    # discord/shard.py, Shard._handle_disconnect and AutoShardedClient.launch_shard
    "Attempting a reconnect for shard ID %s in %.2fs": (
        "shard %s: gateway connection lost; reconnecting in %.2fs (%s)"
    ),
    "Failed to connect for shard_id: %s. Retrying...": (
        "shard %s: could not connect to the gateway; retrying in 5s (%s)"
    ),
    # discord/gateway.py, KeepAliveHandler.run (after a heartbeat timeout)
    "An error occurred while stopping the gateway. Ignoring.": (
        "could not close the unresponsive gateway connection; reconnecting anyway (%s)"
    ),
}
_FILTERED_LOGGERS = ("discord.client", "discord.shard", "discord.gateway")


def describe(exc: BaseException) -> str:
    """``Type: first line of the message``, short enough for one log line."""
    text = str(exc).strip().splitlines()
    summary = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return summary if len(summary) <= 200 else summary[:199] + "…"


# -- malformed events --------------------------------------------------------------


def _guarded(event: str, parser: Callable[[Any], None]) -> Callable[[Any], None]:
    def parse(data: Any) -> None:
        try:
            parser(data)
        except Exception as exc:
            # Dropping one event loses at worst a message or a cache update; letting it
            # escape ends the connection (and, unguarded, the process).
            log.warning("dropped a malformed %s gateway event (%s)", event, describe(exc))
            log.debug("the %s event that failed: %.2000r", event, data, exc_info=exc)

    parse.__wrapped__ = parser  # type: ignore[attr-defined]
    parse._hark_guarded = True  # type: ignore[attr-defined]
    parse.__name__ = getattr(parser, "__name__", f"parse_{event.lower()}")
    return parse


def guard_parsers(state: ConnectionState) -> None:
    """Wrap every gateway event parser of ``state`` (idempotent).

    The websocket looks parsers up in this same dict (``ws._discord_parsers`` is
    ``client._connection.parsers``), so wrapping in place covers sockets created
    before or after this call, sharded or not.
    """
    parsers = state.parsers
    for event, parser in list(parsers.items()):
        if event in _UNGUARDED_EVENTS or getattr(parser, "_hark_guarded", False):
            continue
        parsers[event] = _guarded(event, parser)


# -- reconnect logging -------------------------------------------------------------


class ReconnectLogFilter(logging.Filter):
    """Turn discord.py's reconnect tracebacks into one WARNING line with the cause."""

    def filter(self, record: logging.LogRecord) -> bool:
        template = _REWRITES.get(record.msg) if isinstance(record.msg, str) else None
        if template is None or not record.exc_info:
            return True
        exc = record.exc_info[1]
        # The full traceback stays available to whoever debugs the gateway. This goes
        # through the same logger; its message is no longer a template, so it passes.
        logging.getLogger(record.name).debug("%s", record.getMessage(), exc_info=record.exc_info)
        args = record.args if isinstance(record.args, tuple) else ()
        record.msg = template
        record.args = (*args, describe(exc) if exc is not None else "unknown cause")
        record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


_FILTER = ReconnectLogFilter()


def install_log_filters() -> None:
    """Attach the reconnect filter to discord.py's gateway loggers (idempotent)."""
    for name in _FILTERED_LOGGERS:
        logger = logging.getLogger(name)
        # Logger filters see only records logged on that logger itself, which is
        # where discord.py logs these; a second install must not double them.
        if not any(isinstance(f, ReconnectLogFilter) for f in logger.filters):
            logger.addFilter(_FILTER)


# -- unexpected connection failures ------------------------------------------------


async def keep_connected(
    client: discord.Client,
    connect: Callable[..., Awaitable[None]],
    *,
    reconnect: bool = True,
) -> None:
    """Run ``connect(reconnect=...)`` (discord.py's ``Client.connect``), and retry
    with backoff when it fails with an exception discord.py does not handle itself.

    discord.py reconnects on network errors but lets anything else escape, which
    ends ``Client.start``. A retry IDENTIFYs anew (discord.py keeps the session to
    resume in ``connect``'s locals). Not retried: ``reconnect=False``, the fatal
    errors in ``_FATAL``, cancellation, and anything once the client is closed.
    """
    if not reconnect:
        await connect(reconnect=False)
        return
    backoff = ExponentialBackoff()
    while True:
        try:
            await connect(reconnect=True)
            return
        except _FATAL:
            raise
        except Exception as exc:
            if client.is_closed():
                raise
            retry = backoff.delay()
            log.warning(
                "gateway connection failed unexpectedly; reconnecting in %.2fs (%s)",
                retry,
                describe(exc),
            )
            log.debug("the unexpected gateway failure", exc_info=exc)
        # The socket the failure came from may still be open, its heartbeat thread
        # running: close it so the retry does not leave two connections open.
        ws = client.ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close(code=4000)
        await asyncio.sleep(retry)


# -- bot run -----------------------------------------------------------------------

_HARK_DIR = Path(__file__).resolve().parent


def raised_outside_hark(exc: BaseException, *through: Callable[..., Any]) -> bool:
    """True when no Hark code ran between the handler and the raise, apart from the
    functions in ``through`` (and :func:`keep_connected`) that only pass the call on.

    So ``bot run`` can tell a failure inside discord.py or aiohttp (one ``error:``
    line) from a bug in Hark (which keeps its traceback).
    """
    passing = {keep_connected.__code__, *(inspect.unwrap(f).__code__ for f in through)}
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code not in passing and Path(code.co_filename).resolve().is_relative_to(_HARK_DIR):
            return False
        tb = tb.tb_next
    return True
