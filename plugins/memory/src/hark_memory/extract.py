"""Extraction: the prompt that asks the server's LLM for durable facts, and a
defensive reading of its answer (anything malformed is dropped)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import hark
from hark_memory.store import Fact

#: The first words of the extraction prompt (tests and logs recognise it by them).
EXTRACTION_MARKER = "[memory extraction]"
MAX_FACT_CHARS = 300

_INSTRUCTIONS = f"""{EXTRACTION_MARKER}
You keep the long-term memory of a chat bot. Read the exchanges below and list the \
durable facts worth remembering in later conversations: about the people speaking \
(preferences, plans, pets, work, relationships, how they like to be addressed) and \
about this server or community. Skip small talk, questions, moods of the moment, \
what the bot said unless the person confirmed it, and anything secret (passwords, \
tokens, keys).

Answer with JSON only, in this shape:
{{"facts": [{{"subject": USER_ID or "server", "text": "one short sentence",
"importance": 1-5, "from": EXCHANGE_NUMBER, "replaces": KNOWN_FACT_ID or null}}]}}
- "subject": the user id of the person the fact is about, or "server".
- "text": third person, without the person's name ("has a cat named Miso").
- "replaces": the id of a known fact below that this one corrects or updates.
Answer {{"facts": []}} when there is nothing worth keeping."""


@dataclass(frozen=True, slots=True)
class Exchange:
    """One delivered exchange waiting for extraction."""

    guild_id: int | None
    channel_id: int | None
    user_id: int
    user_name: str
    text: str
    reply: str
    at: float
    kind: str


@dataclass(frozen=True, slots=True)
class Candidate:
    """A fact as the model proposed it, checked."""

    text: str
    subject_id: int | None
    importance: int
    source: Exchange
    replaces: int | None


def extraction_messages(exchanges: list[Exchange], known: list[Fact]) -> list[hark.PromptMessage]:
    lines = [_INSTRUCTIONS]
    if known:
        lines.append("\nKnown facts (id, subject: text):")
        for fact in known:
            who = f"user {fact.subject_id}" if fact.subject_id is not None else "server"
            lines.append(f"{fact.id}, {who}: {fact.text}")
    talk = []
    for number, ex in enumerate(exchanges, start=1):
        talk.append(
            f"[{number}] {ex.user_name} (user {ex.user_id}) said: {ex.text}\n"
            f"    the bot answered: {ex.reply}"
        )
    return [
        hark.PromptMessage("system", "\n".join(lines)),
        hark.PromptMessage("user", "\n\n".join(talk)),
    ]


def _json_start(text: str) -> Any:
    """The first JSON value in ``text`` (models wrap it in prose or ``` fences)."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"[\[{]", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        return value
    raise ValueError("no JSON value")


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def parse_facts(
    answer: str, exchanges: list[Exchange], known_ids: set[int]
) -> list[Candidate] | None:
    """The facts in the model's ``answer``; None when it is not the JSON asked for.

    Items that are not usable (no text, a subject who did not speak, an unknown
    ``replaces``) are dropped one by one; the rest are kept."""
    try:
        data = _json_start(answer)
    except ValueError:
        return None
    if isinstance(data, dict):
        data = data.get("facts")
    if not isinstance(data, list):
        return None
    speakers = {ex.user_id for ex in exchanges}
    out: list[Candidate] = []
    for item in data:
        if not isinstance(item, dict):
            continue
        text = item.get("text")
        if not isinstance(text, str):
            continue
        text = " ".join(text.split())
        if len(text) < 3 or len(text) > MAX_FACT_CHARS:
            continue
        subject = item.get("subject", item.get("subject_user_id"))
        if subject in (None, "server", "place", "channel"):
            subject_id = None
        else:
            subject_id = _as_int(subject)
            if subject_id not in speakers:
                continue  # facts only about people who spoke (or the server)
        importance = _as_int(item.get("importance"))
        importance = 3 if importance is None else max(1, min(5, importance))
        number = _as_int(item.get("from"))
        if number is None or not 1 <= number <= len(exchanges):
            # Who said it: the subject's own last exchange, else the last one.
            mine = [ex for ex in exchanges if ex.user_id == subject_id]
            source = (mine or exchanges)[-1]
        else:
            source = exchanges[number - 1]
        replaces = _as_int(item.get("replaces"))
        out.append(
            Candidate(
                text=text,
                subject_id=subject_id,
                importance=importance,
                source=source,
                replaces=replaces if replaces in known_ids else None,
            )
        )
    return out
