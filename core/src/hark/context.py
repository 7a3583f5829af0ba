"""Assemble a prompt from every enabled context provider, concurrently.

Each provider has its own deadline (its ``timeout``). One that fails or is late
is skipped and recorded in the report; the turn goes on without it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from hark.providers import ContextPart, ContextProvider, ContextRequest, PromptMessage
from hark.providers.errors import ProviderError

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Prompt:
    messages: list[PromptMessage]
    parts: list[ContextPart] = field(default_factory=list)
    # provider id -> short reason, for providers that were skipped this turn
    skipped: dict[str, str] = field(default_factory=dict)


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
    results = await asyncio.gather(
        *(provider.provide(request) for provider in providers), return_exceptions=True
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
