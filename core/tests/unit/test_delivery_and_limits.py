"""Regression tests: a cancelled reply posts nothing late; the rate limiter forgets idle users."""

from __future__ import annotations

import asyncio

from hark.chat.pipeline import Conversation
from hark.chat.ratelimit import RateLimiter
from hark.providers import ContextRequest
from hark.testing.fakes import FakeGenerator, fake_plugin
from hark.testing.harness import isolated_manager


class RecordingTarget:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def send(self, content: str, *, first: bool) -> int:
        self.calls.append(("send", content))
        return len(self.calls)

    async def edit(self, handle: int, content: str) -> None:
        self.calls.append(("edit", content))


async def test_a_cancelled_reply_is_not_posted_later(tmp_path):
    from hark.config import Config
    from hark.runtime import Runtime

    slow = FakeGenerator(["Half a sentence", " and the rest"], chunk_size=15, delay=0.0)
    runtime = Runtime(
        Config(data_dir=tmp_path), manager=isolated_manager({"llm": fake_plugin(slow)})
    )
    await runtime.open()
    try:
        stall = asyncio.Event()

        async def slow_stream(request):
            yield "Half a sentence"
            await stall.wait()  # the model stalls; the turn is then cancelled
            yield " never"

        slow._impl = slow_stream  # the generator's backend for this test
        target = RecordingTarget()
        conversation: Conversation = runtime.conversation
        task = asyncio.create_task(
            conversation.deliver(ContextRequest(text="hi", channel_id=1), target, interval=0.2)
        )
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0.4)  # past the edit interval: a stray timer would post now
        assert target.calls == []
    finally:
        await runtime.close()


def test_rate_limiter_forgets_idle_users():
    now = [0.0]
    limiter = RateLimiter(8, 60, clock=lambda: now[0])
    for user in range(10_000):
        limiter.check(user)
    now[0] = 1e6
    limiter.check(1)
    assert len(limiter._events) < 100
