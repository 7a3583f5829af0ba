"""Waiting for server-side state to change, without polling.

Every state change calls ``Waiters.notify()``, which re-evaluates the pending
predicates. A predicate returns a value when satisfied and None otherwise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError, TimeoutError):
    """A wait helper timed out; an AssertionError so pytest shows the message."""


class Waiters:
    def __init__(self) -> None:
        self._pending: list[tuple[Callable[[], object | None], asyncio.Future[object]]] = []

    def notify(self) -> None:
        for predicate, future in list(self._pending):
            if future.done():
                continue
            try:
                result = predicate()
            except Exception as exc:  # a failing check() should fail the waiting test
                future.set_exception(exc)
            else:
                if result is not None:
                    future.set_result(result)

    async def wait_for(
        self,
        predicate: Callable[[], T | None],
        *,
        timeout: float,
        describe: Callable[[], str],
    ) -> T:
        result = predicate()
        if result is not None:
            return result
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        entry = (predicate, future)
        self._pending.append(entry)
        try:
            return await asyncio.wait_for(future, timeout)  # type: ignore[return-value]
        except TimeoutError:
            raise WaitTimeout(f"timed out after {timeout}s waiting for {describe()}") from None
        finally:
            self._pending.remove(entry)


async def eventually(
    predicate: Callable[[], object], *, timeout: float = 5.0, interval: float = 0.01
) -> None:
    """Poll ``predicate`` until it is truthy: for state on the bot's side (its cache,
    its listeners), which the server cannot notify about."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise WaitTimeout(f"condition still false after {timeout}s")
        await asyncio.sleep(interval)
