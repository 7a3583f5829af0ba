"""The provider base class: the core owns the public call, the plugin the ``_impl``.

Every public provider method (``transcribe``, ``generate``, ``synthesize``,
``provide``) goes through :meth:`Provider._call` or :meth:`Provider._stream`,
which apply the deadline, retry retryable errors with backoff (honouring
Retry-After), record latency, and log with the plugin id. Anything the plugin
raises that is not a :class:`ProviderError` becomes one, so callers handle a
single hierarchy.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from hark.providers.errors import ProviderError, ProviderTimeoutError
from hark.providers.policy import LatencyStats, RetryPolicy
from hark.providers.types import Capability

if TYPE_CHECKING:
    from hark.plugin import Plugin, Settings
    from hark.settings import Resolved
    from hark.store.settings import PluginSettings


T = TypeVar("T")


class Provider:
    """Base of Transcriber, Generator, Synthesizer and ContextProvider.

    Subclasses set ``name`` (unique within the plugin; defaults to the plugin id),
    and may override ``timeout`` and ``retry``. ``plugin_id`` is filled in by the
    core when the plugin registers the object.
    """

    capability: ClassVar[Capability]
    name: str = ""
    timeout: float = 60.0
    # Deadline for a stream's first item, when it differs (e.g. a cold model load);
    # None means ``timeout``. Later items each get ``timeout``.
    first_item_timeout: float | None = None
    # The longest a caller waits for the first result (a call's result, a stream's
    # first item) across every attempt and backoff: retries never stretch the wait
    # past it. The bot sets it from HARK_PROVIDER_DEADLINE; None means no overall cap.
    deadline: float | None = 45.0
    retry: RetryPolicy = RetryPolicy()
    # Among several enabled providers with no explicit choice, the highest wins
    # (e.g. a local fallback voice ranks below a configured cloud one).
    default_priority: int = 0
    # Defaults for settings in the plugin's namespace (registered when the bot binds it).
    default_settings: ClassVar[dict[str, Any]] = {}
    # The plugin's settings model, for a provider used outside a bot (tests, scripts,
    # `bot prepare`); in the bot, the plugin's declaration (hark.Plugin) decides.
    settings_model: ClassVar[type[Settings] | None] = None

    def __init__(self) -> None:
        self.plugin_id: str = ""
        self.stats = LatencyStats()
        # The plugin's settings namespace; bound by the core once the database is open.
        self.settings: PluginSettings | None = None
        # The plugin's declaration (hark.Plugin), set by the core for declared plugins.
        self.declaration: Plugin | None = None
        # The environment layer of declared settings; None means os.environ.
        self.environ: Mapping[str, str] | None = None
        # Outside a bot: (cache key, reporter, last resolution).
        self._reported: Any = None

    @property
    def id(self) -> str:
        """``plugin`` or ``plugin:name``: how commands and logs refer to this provider."""
        if not self.name or self.name == self.plugin_id:
            return self.plugin_id or self.name or type(self).__name__
        return f"{self.plugin_id}:{self.name}" if self.plugin_id else self.name

    def bind(self, settings: PluginSettings) -> None:
        """Attach the plugin's settings namespace (done by the core at start-up)."""
        if self.default_settings:
            settings.register(**self.default_settings)
        model = self._declared_settings_model()
        if model is not None:
            settings.store.declare(settings.namespace, model)
        self.settings = settings

    def _declared_settings_model(self) -> type[Settings] | None:
        declared = self.declaration.settings if self.declaration is not None else None
        return declared or self.settings_model

    def resolve(
        self,
        guild_id: int | None = None,
        channel_id: int | None = None,
        user_id: int | None = None,
    ) -> Resolved[Any] | None:
        """The declared settings for this server/channel/member and where each came
        from (see :mod:`hark.settings`), or None when the plugin declares none.
        Outside a bot (tests, scripts) only the defaults and the environment count."""
        model = self._declared_settings_model()
        if model is None:
            return None
        if self.settings is not None:
            return self.settings.store.resolve(
                self.settings.namespace,
                guild_id=guild_id,
                channel_id=channel_id,
                user_id=user_id,
                environ=self.environ,
            )
        import os

        from hark.settings import ReportOnce, env_key, resolve

        # Only defaults and the environment count here, so the environment is the key.
        environ = os.environ if self.environ is None else self.environ
        ident = (model, env_key(model, environ))
        if self._reported is None or self._reported[0] != ident:
            report = self._reported[1] if self._reported else ReportOnce(self.log)
            resolved = resolve(self.plugin_id, model, environ=environ, report=report)
            self._reported = (ident, report, resolved)
        return self._reported[2]

    def _settings_kwargs(self, guild_id: int | None, channel_id: int | None) -> dict[str, Any]:
        """``{"settings": values}`` for a declared plugin's ``_impl``; {} otherwise."""
        resolved = self.resolve(guild_id, channel_id)
        return {} if resolved is None else {"settings": resolved.values}

    async def check_setting(
        self, key: str, value: Any, *, guild_id: int | None = None, scope: str = "server"
    ) -> Any:
        """Called by `!config` before ``key`` is set to ``value`` (already validated by
        the model) in ``scope`` (``global``, ``server``, ``channel`` or ``user``) of
        server ``guild_id`` (None: a bot-wide value, or a DM): return the value to
        store (e.g. normalized), or raise ValueError with a sentence for the user. For
        checks the model can't make alone, such as looking a voice up in the service's
        list, or refusing another server's channel (which does not apply to a bot-wide
        value). A ProviderError means "couldn't check". An override may leave out
        ``guild_id`` and ``scope``: it is called with the ones it declares."""
        return value

    def setting(self, key: str, guild_id: int | None = None, default: Any = None) -> Any:
        """A setting for this server (falling back to global and defaults), or ``default``
        when the provider is used outside a bot (tests, scripts)."""
        if self.settings is None:
            return self.default_settings.get(key, default)
        return self.settings.guild(guild_id).get(key, default)

    @property
    def log(self) -> logging.Logger:
        # Asked for on every call: kept while the id stays the same.
        ident = self.id
        cached = self.__dict__.get("_logger")
        if cached is None or cached[0] != ident:
            cached = (ident, logging.getLogger(f"hark.provider.{ident}"))
            self.__dict__["_logger"] = cached
        return cached[1]

    async def warm(self) -> None:
        """Get ready for a first call as fast as the ones after it: load a model, run
        one tiny inference, open an HTTP connection. Called when a voice session
        starts; must not block the event loop (run CPU work in an executor)."""

    async def aclose(self) -> None:
        """Release resources (HTTP connection pools, models). Called once at shutdown."""

    def unavailable_reason(self) -> str | None:
        """Why this provider can't work as configured (e.g. "OPENROUTER_API_KEY is not set"),
        or None when it looks usable. Shown in listings and used to pick defaults."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id}>"

    def _wrap(self, exc: BaseException) -> ProviderError:
        if isinstance(exc, ProviderError):
            if exc.provider is None:
                exc.provider = self.id
            return exc
        if isinstance(exc, TimeoutError):
            return ProviderTimeoutError(f"no answer within {self.timeout:g}s", provider=self.id)
        # A plugin bug or an untranslated library error: keep the type, not the text,
        # because library messages can carry URLs or request details.
        self.log.error("unexpected %s from %s", type(exc).__name__, self.id, exc_info=exc)
        return ProviderError(f"internal error ({type(exc).__name__})", provider=self.id)

    def _give_up_at(self) -> float:
        return math.inf if self.deadline is None else time.monotonic() + self.deadline

    def _attempt_timeout(self, limit: float, give_up_at: float) -> float:
        """This attempt's deadline: its own ``limit``, cut to what the overall one leaves."""
        return max(0.0, min(limit, give_up_at - time.monotonic()))

    def _past_deadline(self, give_up_at: float) -> ProviderTimeoutError:
        return ProviderTimeoutError(f"no answer within {self.deadline:g}s", provider=self.id)

    async def _backoff(
        self, attempt: int, error: ProviderError, op: str, give_up_at: float = math.inf
    ) -> bool:
        delay = self.retry.delay(attempt, error)
        if delay is None:
            return False
        if time.monotonic() + delay >= give_up_at:
            return False  # the retry could not start before the overall deadline
        self.stats.retries += 1
        self.log.warning("%s %s failed (%s); retry %d in %.2fs", self.id, op, error, attempt, delay)
        await asyncio.sleep(delay)
        return True

    async def _call(self, op: str, make: Callable[[], Awaitable[T]]) -> T:
        """Run ``make()`` with deadline, retries and metrics."""
        attempt = 0
        give_up_at = self._give_up_at()
        while True:
            attempt += 1
            started = time.perf_counter()
            limit = self._attempt_timeout(self.timeout, give_up_at)
            try:
                async with asyncio.timeout(limit):
                    result = await make()
            except Exception as exc:
                error = self._wrap(exc)
                if isinstance(exc, TimeoutError) and limit < self.timeout:
                    error = self._past_deadline(give_up_at)
                self.stats.record(
                    time.perf_counter() - started,
                    ok=False,
                    timed_out=isinstance(error, ProviderTimeoutError),
                )
                if await self._backoff(attempt, error, op, give_up_at):
                    continue
                self.log.warning("%s %s failed: %s", self.id, op, error)
                if error is exc:
                    raise
                # Not chained: a library's text may carry request details, and _wrap
                # already logged it with its traceback.
                raise error from None
            elapsed = time.perf_counter() - started
            self.stats.record(elapsed, ok=True)
            self.log.debug("%s %s ok in %.3fs", self.id, op, elapsed)
            return result

    async def _stream(self, op: str, make: Callable[[], AsyncIterator[T]]) -> AsyncIterator[T]:
        """Iterate ``make()`` with a per-item deadline, retries and metrics.

        A stream is retried only while it has produced nothing: once output has
        been handed on, replaying it would duplicate what the user already saw.
        """
        attempt = 0
        give_up_at = self._give_up_at()
        while True:
            attempt += 1
            started = time.perf_counter()
            produced = False
            cut_short = False
            stream = make()
            # Read once a stream: a plugin's timeout may come from its settings.
            per_item = self.timeout
            try:
                while True:
                    limit = per_item
                    if not produced:
                        if self.first_item_timeout is not None:
                            limit = self.first_item_timeout
                        # Until something arrives, the overall deadline applies too.
                        full, limit = limit, self._attempt_timeout(limit, give_up_at)
                        cut_short = limit < full
                    try:
                        async with asyncio.timeout(limit):
                            item = await anext(stream)
                    except StopAsyncIteration:
                        break
                    if not produced:
                        self.stats.record_first(time.perf_counter() - started)
                    produced = True
                    yield item
            except Exception as exc:
                error = self._wrap(exc)
                if isinstance(exc, TimeoutError) and not produced and cut_short:
                    error = self._past_deadline(give_up_at)
                self.stats.record(
                    time.perf_counter() - started,
                    ok=False,
                    timed_out=isinstance(error, ProviderTimeoutError),
                )
                if not produced and await self._backoff(attempt, error, op, give_up_at):
                    continue
                self.log.warning("%s %s failed: %s", self.id, op, error)
                if error is exc:
                    raise
                # Not chained: a library's text may carry request details, and _wrap
                # already logged it with its traceback.
                raise error from None
            finally:
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()
            elapsed = time.perf_counter() - started
            self.stats.record(elapsed, ok=True)
            self.log.debug("%s %s streamed in %.3fs", self.id, op, elapsed)
            return
