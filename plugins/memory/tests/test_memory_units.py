"""The memory plugin's parts on their own: secrets, parsing, the store, the budget."""

from __future__ import annotations

import logging
import types

import hark_memory
import pytest
from hark_memory import (
    Exchange,
    Memory,
    MemorySettings,
    MemoryStore,
    NewFact,
    estimate_tokens,
    looks_secret,
    parse_facts,
    redact,
)
from hark_memory.store import fts_query, near_duplicate, ts_query

import hark
from hark.testing.harness import BotHarness

SECRETS = [
    "sk-or-v1-0123456789abcdef0123456789abcdef",
    "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUv",
    "MTA4NzY1NDMyMTA5ODc2NTQz.GaBcDe.abcdefghijklmnopqrstuvwxyz0123",  # Discord-shaped
    "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "AKIAIOSFODNN7EXAMPLE",
    "my password is hunter2hunter2",
    "api_key=abcdef123456",
    "deadbeefdeadbeefdeadbeefdeadbeef00",
    "token: dGhpcyBpcyBhIHNlY3JldCB0b2tlbiBmb3IgdGVzdHM9",
    "-----BEGIN RSA PRIVATE KEY-----",
]
PLAIN = [
    "has a cat named Miso",
    "their Discord id is 123456789012345678",  # a snowflake is not a secret
    "likes https://example.com/some/long/path/to/a/recipe-page",
    "is an incomprehensibilities enthusiast",
]


@pytest.mark.parametrize("text", SECRETS)
def test_secret_looking_strings_are_caught_and_redacted(text):
    assert looks_secret(f"note: {text} ok")
    assert not looks_secret(redact(f"note: {text} ok"))


@pytest.mark.parametrize("text", PLAIN)
def test_ordinary_facts_are_not_secrets(text):
    assert not looks_secret(text)
    assert redact(text) == text


def _exchanges() -> list[Exchange]:
    return [
        Exchange(1, 10, 100, "alice", "my cat is Miso", "Noted.", 1.0, "text"),
        Exchange(1, 11, 200, "bob", "I play cello", "Nice.", 2.0, "voice"),
    ]


def test_the_answer_is_read_defensively():
    ex = _exchanges()
    answer = """Sure! Here you go:
    ```json
    {"facts": [
      {"subject": 100, "text": "has a cat named  Miso", "importance": 9},
      {"subject": "200", "text": "plays the cello", "from": 2, "replaces": 7},
      {"subject": 300, "text": "is not in this conversation"},
      {"subject": "server", "text": "x"},
      {"subject": "server", "text": "meets on Fridays", "importance": "high", "replaces": 99},
      "not an object",
      {"text": 42}
    ]}
    ```"""
    got = parse_facts(answer, ex, known_ids={7})
    assert [(c.subject_id, c.text, c.importance, c.replaces) for c in got] == [
        (100, "has a cat named Miso", 5, None),
        (200, "plays the cello", 3, 7),
        (None, "meets on Fridays", 3, None),
    ]
    # Who said it: "from", else the subject's own exchange, else the last one.
    assert [c.source.user_id for c in got] == [100, 200, 200]
    assert parse_facts("no JSON at all", ex, set()) is None
    assert parse_facts('{"facts": "none"}', ex, set()) is None
    assert parse_facts("[]", ex, set()) == []


def test_the_fts_query_quotes_words_and_skips_stopwords():
    assert fts_query('What is my "cat" called? OR NOT*') == '"cat" OR "called" OR "not"'
    assert fts_query("what is it?") is None
    # PostgreSQL's to_tsquery: the same words, no operator of the text's own survives.
    assert ts_query("What is my 'cat' (called)? | !NOT & x:*") == "cat | called | not"
    assert ts_query("what is it?") is None
    assert near_duplicate("lives in Marseille", "Lives in Marseille.")
    assert not near_duplicate("lives in Marseille", "lives in Lyon")


@pytest.fixture
async def store(tmp_path, db_config):
    """The plugin's store on the bot's database (SQLite, then PostgreSQL), its tables
    made by the real migrations."""
    async with BotHarness(tmp_path, plugins={"memory": hark_memory.plugin}, config=db_config) as h:
        yield MemoryStore(h.bot.host.database("memory"))


def _fact(text: str, importance: int, at: float, subject: int | None = 100) -> NewFact:
    return NewFact(text, subject, "alice", importance, 100, "alice", 1, 10, at)


async def test_eviction_weighs_importance_against_age(store):
    day = 86400.0
    now = 1000 * day
    await store.save(
        "guild:1",
        [
            _fact("old but vital", 5, now - 100 * day),
            _fact("recent trivia", 1, now - 1 * day),
            _fact("older trivia", 1, now - 5 * day),
            _fact("two months old, importance 3", 3, now - 60 * day),
        ],
        max_facts=10,
        now=now,
    )
    await store.save("guild:2", [_fact("another server", 1, now - 900 * day)], max_facts=10)
    # Cut to 2: the older trivia goes first (score 30 - 5 days), then the recent
    # trivia (30 - 1), which weighs less than importance 3 at 60 days (90 - 60).
    await store.save("guild:1", [], max_facts=2, now=now)
    kept = {f.text for f in await store.about("guild:1", 100)}
    assert kept == {"old but vital", "two months old, importance 3"}
    assert await store.count("guild:2") == 1  # another server's cap is its own


async def test_spaces_and_search(store):
    await store.save("guild:1", [_fact("has a cat named Miso", 4, 1.0)], max_facts=10)
    await store.save("dm:100", [_fact("is saving for a bicycle", 3, 1.0)], max_facts=10)
    assert [f.text for f in await store.search("guild:1", "my cats")] == ["has a cat named Miso"]
    assert await store.search("guild:1", "bicycle") == []
    assert [f.text for f in await store.search("dm:100", "bicycle")] == ["is saving for a bicycle"]
    assert await store.forget_member("guild:1", 100) == 1
    assert await store.count("dm:100") == 1


class FakeHost:
    """What Memory asks of the bot: settings, the database, a logger."""

    def __init__(self, db, **settings) -> None:
        self.db = db
        self.values = MemorySettings(**settings)

    def settings(self, plugin_id, **_):
        return types.SimpleNamespace(values=self.values)

    def database(self, plugin_id):
        return self.db

    def logger(self, plugin_id):
        return logging.getLogger(f"hark.plugin.{plugin_id}")


async def test_recall_keeps_to_the_token_budget_most_important_first(store):
    facts = [_fact(f"fact number {n} about the garden", 1 + n % 5, float(n)) for n in range(200)]
    await store.save("guild:1", facts, max_facts=1000)
    bob = NewFact("grows tomatoes in the garden", 200, "bob", 3, 200, "bob", 1, 10, 5.0)
    await store.save("guild:1", [bob], max_facts=1000)
    memory = Memory(FakeHost(store.db, recall_tokens=120), "memory")
    request = hark.ContextRequest("how is my garden", guild_id=1, user_id=100, user_name="alice")
    text = await memory.recall(request)
    assert estimate_tokens(text) <= 120
    lines = [line for line in text.splitlines() if line.startswith("- ")]
    assert lines and all("fact number" in line for line in lines)  # the profile first
    assert text.splitlines()[1] == "About alice:"
    # With room, what the message is about follows, naming whose fact it is.
    memory = Memory(FakeHost(store.db, recall_tokens=4000), "memory")
    text = await memory.recall(request)
    assert "- (bob) grows tomatoes in the garden" in text
    # Nothing at all in another server; memory off: nothing either.
    elsewhere = hark.ContextRequest("how is my garden", guild_id=2, user_id=100)
    assert await memory.recall(elsewhere) is None
    memory = Memory(FakeHost(store.db, enabled=False), "memory")
    assert await memory.recall(request) is None
