"""hark.context.assemble: concurrent context providers, each with its own deadline."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from hark import ContextPart, ContextProvider, ContextRequest, PromptMessage
from hark.context import assemble
from hark.testing.fakes import FakeContextProvider

REQUEST = ContextRequest(text="what's up?", guild_id=1, channel_id=2, user_id=3, user_name="alice")
USER = PromptMessage("user", "what's up?", name="alice")


def named(provider: ContextProvider, plugin_id: str) -> ContextProvider:
    provider.plugin_id = plugin_id
    return provider


async def test_providers_run_concurrently() -> None:
    providers = [
        named(FakeContextProvider(f"part {i}", delay=0.2, order=i), f"p{i}") for i in range(3)
    ]
    started = time.monotonic()
    prompt = await assemble(providers, REQUEST, user_message=USER)
    elapsed = time.monotonic() - started
    assert elapsed < 0.5, f"took {elapsed:.2f}s: providers ran one after another"
    assert len(prompt.parts) == 3 and not prompt.skipped
    assert all(p.requests == [REQUEST] for p in providers)


async def test_late_and_crashing_providers_are_skipped_and_recorded(caplog) -> None:
    good = named(FakeContextProvider("You are Hark.", order=0), "persona")
    late = named(FakeContextProvider("late", delay=2, timeout=0.05), "slow")
    crash = named(FakeContextProvider("x", fail_with=[KeyError("oops")]), "buggy")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        prompt = await assemble([late, good, crash], REQUEST, user_message=USER)
    assert time.monotonic() - started < 1.5, "the late provider was waited for"
    assert set(prompt.skipped) == {"slow", "buggy"}
    assert "0.05s" in prompt.skipped["slow"]
    assert "KeyError" in prompt.skipped["buggy"] and "oops" not in prompt.skipped["buggy"]
    assert [m.content for m in prompt.messages] == ["You are Hark.", "what's up?"]
    assert [p.source for p in prompt.parts] == ["persona"]
    assert any("slow" in r.getMessage() for r in caplog.records)


async def test_provider_raising_outside_the_wrapper_is_skipped() -> None:
    class Rogue(ContextProvider):
        async def provide(self, request):  # overrides the core's public method: a plugin bug
            raise ValueError("bad")

    rogue = named(Rogue(), "rogue")
    ok = named(FakeContextProvider("hi"), "ok")
    prompt = await assemble([rogue, ok], REQUEST)
    assert prompt.skipped == {"rogue": "ValueError"}
    assert [m.content for m in prompt.messages] == ["hi"]


async def test_system_messages_merged_first_and_parts_ordered() -> None:
    history = named(
        FakeContextProvider(
            [
                PromptMessage("user", "earlier question", name="bob"),
                PromptMessage("assistant", "earlier answer"),
            ],
            order=50,
        ),
        "history",
    )
    memory = named(
        FakeContextProvider(
            [PromptMessage("system", "Alice likes cats."), PromptMessage("user", "memo")],
            order=20,
        ),
        "memory",
    )
    persona = named(FakeContextProvider("You are Hark.", order=0), "persona")
    blank = named(FakeContextProvider([PromptMessage("system", "")], order=10), "blank")
    nothing = named(FakeContextProvider(None), "nothing")
    prompt = await assemble([history, nothing, memory, blank, persona], REQUEST, user_message=USER)
    assert prompt.messages == [
        PromptMessage("system", "You are Hark.\n\nAlice likes cats."),
        PromptMessage("user", "memo"),
        PromptMessage("user", "earlier question", name="bob"),
        PromptMessage("assistant", "earlier answer"),
        USER,
    ]
    assert [p.order for p in prompt.parts] == [0, 10, 20, 50]
    assert [p.source for p in prompt.parts] == ["persona", "blank", "memory", "history"]


async def test_equal_orders_keep_provider_order() -> None:
    providers = [named(FakeContextProvider([PromptMessage("user", c)]), c) for c in "abc"]
    prompt = await assemble(providers, REQUEST)
    assert [m.content for m in prompt.messages] == ["a", "b", "c"]


async def test_user_message_last_and_optional() -> None:
    provider = named(FakeContextProvider([PromptMessage("assistant", "hi")], order=99), "h")
    with_user = await assemble([provider], REQUEST, user_message=USER)
    assert with_user.messages[-1] is USER
    without = await assemble([provider], REQUEST)
    assert without.messages == [PromptMessage("assistant", "hi")]
    empty = await assemble([], REQUEST, user_message=USER)
    assert empty.messages == [USER] and empty.parts == [] and empty.skipped == {}


async def test_cancelling_assemble_cancels_the_providers() -> None:
    slow = named(FakeContextProvider("x", delay=5, timeout=10), "slow")
    task = asyncio.create_task(assemble([slow], REQUEST))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_provider_hit_by_a_foreign_cancellation_is_skipped() -> None:
    shared: asyncio.Future[ContextPart] = asyncio.get_running_loop().create_future()

    async def lookup(request):
        return await shared  # cancelled below by someone else

    cached = named(FakeContextProvider(lookup), "memory")
    ok = named(FakeContextProvider("hi"), "ok")
    task = asyncio.create_task(assemble([cached, ok], REQUEST))
    await asyncio.sleep(0.01)
    shared.cancel()
    prompt = await task
    assert "memory" in prompt.skipped


async def test_a_lone_provider_hit_by_a_foreign_cancellation_is_skipped() -> None:
    # One provider runs in assemble's own task (no gather): the same verdict as above.
    shared: asyncio.Future[ContextPart] = asyncio.get_running_loop().create_future()

    async def lookup(request):
        return await shared

    cached = named(FakeContextProvider(lookup), "memory")
    task = asyncio.create_task(assemble([cached], REQUEST))
    await asyncio.sleep(0.01)
    shared.cancel()
    prompt = await task
    assert "memory" in prompt.skipped


async def test_inline_and_lone_providers_get_no_task_of_their_own() -> None:
    tasks: list[asyncio.Task | None] = []

    async def where(request):
        tasks.append(asyncio.current_task())
        await asyncio.sleep(0)
        return ContextPart([PromptMessage("system", "x")])

    inline = named(FakeContextProvider(where), "persona")
    inline.inline = True
    io = named(FakeContextProvider(where), "history")
    await assemble([inline, io], REQUEST)
    assert tasks == [asyncio.current_task()] * 2
    # Two providers that wait on I/O still run concurrently, each in its own task.
    tasks.clear()
    other = named(FakeContextProvider(where), "memory")
    await assemble([inline, io, other], REQUEST)
    assert tasks.count(asyncio.current_task()) == 1 and len(set(tasks)) == 3
