"""The host interface: everything a plugin may ask of the bot that runs it.

A Cog reaches it as ``self.host`` (a provider is handed its settings per call and
needs none of it). The bot implements :class:`Host`; tests can too. Nothing here
imports discord.py, so a plugin's logic can be written and tested against it alone:

    class Status(hark.PluginCog):
        async def announce(self, channel_id: int, text: str) -> None:
            await self.host.say(channel_id, text)          # no pings, split to fit
            self.host.events.emit("status_announced", channel_id=channel_id)
            self.host.logger(self.plugin_id).info("announced in %s", channel_id)

What it gives:

- **settings**: :meth:`Host.settings` — a plugin's resolved values for a server,
  channel and member, with where each came from (:class:`hark.Resolved`);
- **providers**: :meth:`Host.providers` and :meth:`Host.provider` — every loaded
  provider of a capability, and the one a server uses;
- **reply / speak**: :meth:`Host.reply` answers through the server's LLM into a
  channel, :meth:`Host.answer` answers for somewhere else (another platform's
  chat), :meth:`Host.say` posts text as it is, :meth:`Host.speak` talks in the
  server's voice session; :meth:`Host.names` is what the bot answers to;
- **events**: :class:`Events` — in-process notifications (``reply``,
  ``plugins_changed``, and any a plugin emits);
- **storage**: :meth:`Host.database` — the plugin's tables in the bot's database
  (:class:`PluginDatabase`; the plugin declares them with ``hark.Plugin(migrations=...)``);
- **work that runs once**: :meth:`Host.run_once` — a job that runs in one process of
  a deployment of several (a connection to another service), :meth:`Host.leader`;
- **logging** with secret redaction: :meth:`Host.logger`, :func:`register_secret`;
- **error translation**: :class:`ErrorTranslator` turns aiohttp, httpx and openai
  exceptions into the provider error hierarchy.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from hark.logs import redact, register_secret
from hark.providers.kinds import without_images
from hark.providers.translate import ErrorTranslator, HttpFailure, body_message
from hark.providers.types import Capability, ContextRequest
from hark.settings import Resolved

if TYPE_CHECKING:
    from hark.providers.base import Provider

log = logging.getLogger("hark.events")

Listener = Callable[..., "Awaitable[None] | None"]


class Events:
    """Named in-process events. A listener gets the payload as keyword arguments;
    async listeners run as tasks, so :meth:`emit` never waits for (or fails with) one.

    The core emits ``reply`` (``guild_id, channel_id, text``) after a reply is
    delivered, ``plugins_changed`` (``guild_id``) when a server's plugins change, and
    ``settings_changed`` (``plugin_id, key, scope, target_id``) when `!config` set or
    reset a value.
    """

    def __init__(self) -> None:
        self._listeners: defaultdict[str, list[Listener]] = defaultdict(list)
        self._tasks: set[asyncio.Task[None]] = set()

    def subscribe(self, name: str, listener: Listener) -> Callable[[], None]:
        """Call ``listener(**payload)`` on each ``name`` event; returns the unsubscriber."""
        self._listeners[name].append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners.get(name, ()):
                self._listeners[name].remove(listener)

        return unsubscribe

    def emit(self, name: str, **payload: Any) -> None:
        for listener in list(self._listeners.get(name, ())):
            try:
                result = listener(**payload)
            except Exception:
                log.exception("listener %r of event %r failed", listener, name)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(self._guard(name, listener, result))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _guard(name: str, listener: Listener, result: Awaitable[None]) -> None:
        try:
            await result
        except Exception:
            log.exception("listener %r of event %r failed", listener, name)

    async def drain(self, timeout: float = 2.0) -> None:
        """Wait (bounded) for listeners still running; used at shutdown and in tests."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)


Row = tuple[Any, ...]


@runtime_checkable
class PluginQueries(Protocol):
    """Statements on the bot's database. Parameters are ``?`` placeholders, always
    (never format values into SQL); the PostgreSQL store translates them."""

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Run one statement; returns the number of rows it changed."""
        ...

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement once per row of parameters."""
        ...

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        """Every row a query returns, as tuples."""
        ...

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        """The first row a query returns, or None."""
        ...


@runtime_checkable
class PluginDatabase(PluginQueries, Protocol):
    """A plugin's access to the bot's database (:meth:`Host.database`).

    Outside :meth:`transaction`, each ``execute``/``executemany`` is committed on its
    own and reads see committed data. Name tables ``<plugin_id>_*``. Write SQL for
    :attr:`dialect` where the dialects differ (full-text search: FTS5 in SQLite,
    ``tsvector`` in PostgreSQL).
    """

    @property
    def dialect(self) -> str:
        """``"sqlite"`` (the default store) or ``"postgresql"``."""
        ...

    @property
    def plugin_id(self) -> str: ...

    def transaction(self) -> AbstractAsyncContextManager[PluginQueries]:
        """``async with db.transaction() as tx:``: statements committed together, or
        rolled back together if the block raises. Keep it short: it holds the write
        lock, and no other statement of the bot runs meanwhile."""
        ...


@runtime_checkable
class LeaderJob(Protocol):
    """A job started with :meth:`Host.run_once`."""

    @property
    def name(self) -> str: ...

    @property
    def leading(self) -> bool:
        """True while this process is the one that runs the job."""
        ...

    async def holder(self) -> str | None:
        """The process that runs it now (``host:pid``), or None while none does."""
        ...

    async def stop(self) -> None:
        """Stop the job here (cancelled if it runs) and stop competing for it."""
        ...


@runtime_checkable
class Host(Protocol):
    """What a plugin may use of the bot. ``HarkBot.host`` implements it."""

    @property
    def events(self) -> Events: ...

    def settings(
        self,
        plugin_id: str,
        *,
        guild_id: int | None = None,
        channel_id: int | None = None,
        user_id: int | None = None,
    ) -> Resolved[Any]:
        """A declared plugin's values here, with their origins."""
        ...

    def providers(self, capability: Capability) -> list[Provider]:
        """Every loaded provider of ``capability``, whichever plugin registered it."""
        ...

    def provider(self, capability: Capability, guild_id: int | None) -> Provider | None:
        """The provider a server uses for ``capability`` (its choice, else the best
        usable one), or None when there is none (or its plugin is off there)."""
        ...

    async def reply(
        self, channel_id: int, request: ContextRequest, *, notify_errors: bool = True
    ) -> str | None:
        """Answer ``request`` through the server's LLM, streamed into the channel, and
        record it in history. Returns the delivered text, or None if nothing was."""
        ...

    async def answer(
        self, request: ContextRequest, deliver: Callable[[str], Awaitable[str | None]]
    ) -> str | None:
        """Answer ``request`` through the server's LLM and hand the whole text to
        ``deliver``, which posts it outside Discord (a Twitch chat) and returns what
        it posted, or None. What was posted is recorded (history, when the request
        uses it); nothing is when ``deliver`` posted nothing. A provider failure
        raises its :class:`hark.ProviderError`. Shutdown waits for it."""
        ...

    def names(self) -> list[str]:
        """What the bot answers to: ``BOT_TRIGGER_NAMES``, else its Discord name."""
        ...

    @property
    def prefix(self) -> str:
        """The prefix of its text commands (``!`` unless configured), for help texts."""
        ...

    async def say(self, channel_id: int, text: str) -> bool:
        """Post ``text`` as it is (split to Discord's limit, never pinging anyone);
        False when the channel is unknown or the bot may not post there."""
        ...

    async def speak(self, guild_id: int, text: str) -> bool:
        """Say ``text`` in the server's voice session; False when there is none."""
        ...

    def logger(self, plugin_id: str) -> logging.Logger:
        """The plugin's logger (``hark.plugin.<id>``); registered secrets are redacted."""
        ...

    def database(self, plugin_id: str) -> PluginDatabase:
        """The bot's database for ``plugin_id``'s tables (created by its migrations)."""
        ...

    def run_once(self, name: str, job: Callable[[], Awaitable[Any]]) -> LeaderJob:
        """Run ``job()`` in exactly one process of the deployment (every process
        sharing the database): the one that holds the lock ``name``. Another process
        starts it when that one dies or loses the database, within a few seconds; a
        process that loses the lock has its job cancelled first. One process alone
        runs it at once. Stopped when the bot shuts down (or by ``stop()``).
        If ``job`` returns, it is not started again until leadership moves."""
        ...

    async def leader(self, name: str) -> str | None:
        """The process that runs ``name`` now (``host:pid``), or None."""
        ...


def plugin_logger(plugin_id: str) -> logging.Logger:
    return logging.getLogger(f"hark.plugin.{plugin_id}")


__all__ = [
    "ErrorTranslator",
    "Events",
    "Host",
    "HttpFailure",
    "LeaderJob",
    "PluginDatabase",
    "PluginQueries",
    "Row",
    "body_message",
    "plugin_logger",
    "redact",
    "register_secret",
    "without_images",
]
