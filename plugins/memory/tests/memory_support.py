"""Helpers for the memory plugin's tests: a fake LLM that answers the extraction
prompt with scripted facts (and ordinary messages with a plain answer), and ways to
read what reached the prompt and what is stored."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import hark_memory

import hark
from hark.testing.fakes import FakeGenerator, fake_plugin
from hark.testing.harness import BotHarness

CONFIG = {"trigger_names": ["robot"], "rate_limit": "0"}


class Brain:
    """The fake LLM's script. ``facts`` is what the next extraction call answers
    (a list of fact dicts, raw text, or an exception to raise); replies are "Noted.".
    Every extraction prompt is kept in ``extractions``."""

    def __init__(self) -> None:
        self.facts: Any = []
        self.extractions: list[list[hark.PromptMessage]] = []
        self.answer = "Noted."

    def __call__(self, messages: list[hark.PromptMessage]) -> str:
        if messages and messages[0].content.startswith(hark_memory.EXTRACTION_MARKER):
            self.extractions.append(messages)
            facts, self.facts = self.facts, []
            if isinstance(facts, BaseException):
                raise facts
            return facts if isinstance(facts, str) else json.dumps({"facts": facts})
        return self.answer


def memory_plugins(brain: Brain, **generator: Any) -> tuple[dict[str, Any], FakeGenerator]:
    llm = FakeGenerator(brain, **generator)
    return {"memory": hark_memory.plugin, "fake_llm": fake_plugin(llm)}, llm


def memory_config(**settings: Any) -> dict[str, Any]:
    """The harness config with ``[plugin.memory]`` values (one exchange per batch by default)."""
    return {**CONFIG, "plugin_settings": {"memory": {"batch_exchanges": 1, **settings}}}


def replies(llm: FakeGenerator) -> list[hark.GenerationRequest]:
    """The requests for replies (not extraction)."""
    return [
        r
        for r in llm.requests
        if not r.messages[0].content.startswith(hark_memory.EXTRACTION_MARKER)
    ]


def last_prompt(llm: FakeGenerator) -> str:
    return "\n".join(m.content for m in replies(llm)[-1].messages)


async def facts(h: BotHarness, where: str = "1 = 1", params: tuple = ()) -> list[tuple]:
    db = h.bot.host.database("memory")
    return await db.fetchall(
        "SELECT id, space, subject_id, text, importance, said_by, guild_id, channel_id"
        f" FROM memory_facts WHERE {where} ORDER BY id",
        params,
    )


async def until(check: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    async with asyncio.timeout(timeout):
        while not (result := await check()):
            await asyncio.sleep(0.02)
    return result


async def wait_for_facts(h: BotHarness, count: int, timeout: float = 10.0) -> list[tuple]:
    async def enough() -> list[tuple] | None:
        rows = await facts(h)
        return rows if len(rows) >= count else None

    return await until(enough, timeout)
