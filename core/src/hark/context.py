"""Assemble a prompt from every enabled context provider, concurrently.

Concurrently where it matters: providers that do no I/O (``inline``) and a lone
provider that does run in the turn's own task (no task each, see :func:`settle`).

Each provider has its own deadline (its ``timeout``). One that fails or is late
is skipped and recorded in the report; the turn goes on without it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hark.providers import ContextPart, ContextProvider, ContextRequest, PromptMessage
from hark.providers.errors import ProviderError

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Prompt:
    messages: list[PromptMessage]
    parts: list[ContextPart] = field(default_factory=list)
    # provider id -> short reason, for providers that were skipped this turn
    skipped: dict[str, str] = field(default_factory=dict)


async def _outcome(call: Callable[[], Awaitable[Any]]) -> Any:
    """``await call()``, with an exception returned rather than raised (as gather's
    ``return_exceptions`` does); the current task's own cancellation still raises."""
    try:
        return await call()
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        return exc
    except Exception as exc:
        return exc


async def settle(
    calls: Sequence[Callable[[], Awaitable[Any]]], inline: Sequence[bool]
) -> list[Any]:
    """``asyncio.gather(*(c() for c in calls), return_exceptions=True)`` without a task
    per call where none is needed: calls flagged ``inline`` (they do no I/O) run in
    this task, one after another, and so does the one call left when only one may
    wait on I/O. Several such calls still run concurrently. Results in ``calls`` order."""
    concurrent = [i for i, flag in enumerate(inline) if not flag]
    if len(concurrent) < 2:
        return [await _outcome(call) for call in calls]
    results: list[Any] = [None] * len(calls)
    running = asyncio.gather(*(calls[i]() for i in concurrent), return_exceptions=True)
    try:
        for i, flag in enumerate(inline):
            if flag:
                results[i] = await _outcome(calls[i])
    except BaseException:
        running.cancel()
        raise
    for i, result in zip(concurrent, await running, strict=True):
        results[i] = result
    return results


async def assemble(
    providers: Sequence[ContextProvider],
    request: ContextRequest,
    *,
    user_message: PromptMessage | None = None,
) -> Prompt:
    """Run ``providers`` concurrently and order their parts; the user's message goes last.

    System messages from all parts are merged into one leading system message,
    because several chat APIs accept only one, and only first.
    """
    # A provider that needs no I/O (``inline``, e.g. the persona) gets no task of its own.
    results = await settle(
        [functools.partial(provider.provide, request) for provider in providers],
        [provider.inline for provider in providers],
    )
    parts: list[ContextPart] = []
    skipped: dict[str, str] = {}
    for provider, result in zip(providers, results, strict=True):
        if isinstance(result, ProviderError):
            skipped[provider.id] = str(result.message)
            log.warning("context provider %s skipped: %s", provider.id, result.message)
        elif isinstance(result, BaseException):
            # A CancelledError *returned* by gather comes from the provider's own await
            # (if this turn were cancelled, gather would raise instead): skip it too.
            skipped[provider.id] = type(result).__name__
            log.error("context provider %s crashed", provider.id, exc_info=result)
        elif result is not None:
            parts.append(result)
    parts.sort(key=lambda part: part.order)

    system = [
        m.content for part in parts for m in part.messages if m.role == "system" and m.content
    ]
    messages: list[PromptMessage] = []
    if system:
        messages.append(PromptMessage("system", "\n\n".join(system)))
    messages.extend(m for part in parts for m in part.messages if m.role != "system")
    if user_message is not None:
        messages.append(user_message)
    return Prompt(messages=messages, parts=parts, skipped=skipped)
