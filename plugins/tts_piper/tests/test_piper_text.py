"""What Piper is asked to say: markdown cleaned away, text cut into short pieces."""

from __future__ import annotations

import pytest
from hark_tts_piper.text import sentences, speech_text, split_for_speech


@pytest.mark.parametrize(
    ("raw", "spoken"),
    [
        ("**Bold** and *italic* and __under__ and ~~gone~~", "Bold and italic and under and gone"),
        ("2 * 3 = 6 and snake_case stays", "2 * 3 = 6 and snake_case stays"),
        ("Run `pip install hark` now.", "Run pip install hark now."),
        ("Code:\n```python\nprint('hi')\n```\nDone.", "Code:\nDone."),
        ("# Heading\n> quoted\n- one\n* two\n+ three", "Heading\nquoted\none\ntwo\nthree"),
        ("Hi <@123>, see <#456> <@&789> <a:dance:42>!", "Hi, see dance!"),
        ("Read [the docs](https://example.com/docs).", "Read the docs."),
        ("Go to https://example.com/a?b=c now", "Go to a link now"),
        ("||spoiler|| text", "spoiler text"),
        ("  lots   of\t\tspace  ", "lots of space"),
    ],
)
def test_speech_text(raw, spoken):
    assert speech_text(raw) == spoken


def test_sentences_keep_numbers_quotes_and_line_breaks():
    text = 'Pi is 3.14, roughly. "Really?" she asked! Yes…\nA list item\nAnother'
    assert sentences(text) == [
        "Pi is 3.14, roughly.",
        '"Really?"',
        "she asked!",
        "Yes…",
        "A list item",
        "Another",
    ]


def test_short_text_is_one_piece_per_sentence():
    assert split_for_speech("Hello there. How are you? Fine!") == [
        "Hello there.",
        "How are you?",
        "Fine!",
    ]


def test_a_long_first_sentence_is_cut_at_a_clause_break_for_early_audio():
    first = (
        "When the weather is fine and the sun is up, which happens rarely in this part "
        "of the world, we like to go for a long walk along the river and back home again."
    )
    pieces = split_for_speech(first + " Short.", first_chars=80, max_chars=300)
    assert pieces == [
        "When the weather is fine and the sun is up,",
        "which happens rarely in this part of the world, we like to go for a long walk "
        "along the river and back home again.",
        "Short.",
    ]
    assert " ".join(pieces) == first + " Short."


def test_long_later_sentences_are_cut_too_and_nothing_is_lost():
    clause = "and then another clause follows, "
    long = "It starts here, " + clause * 12 + "and it ends."
    pieces = split_for_speech("Hi. " + long, first_chars=120, max_chars=100)
    assert pieces[0] == "Hi."
    assert all(len(p) <= 100 for p in pieces)
    assert " ".join(pieces[1:]) == long


def test_a_long_sentence_without_clause_breaks_stays_whole():
    words = " ".join(["word"] * 60) + "."
    assert split_for_speech(words, first_chars=50) == [words]


@pytest.mark.parametrize("text", ["", "   ", "...", "!!", "```\ncode only\n```", "<@123>"])
def test_nothing_to_say(text):
    assert split_for_speech(text) == []


def test_emoji_alone_is_spoken():
    assert split_for_speech("🙂") == ["🙂"]
