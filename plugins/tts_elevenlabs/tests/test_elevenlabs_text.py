"""Cutting long text into requests, and re-cutting HTTP chunks into whole samples."""

from __future__ import annotations

import random

import pytest
from hark_tts_elevenlabs.synthesizer import PcmAligner
from hark_tts_elevenlabs.text import REQUEST_CHAR_LIMIT, split_for_requests, split_sentences


def numbered(count: int) -> str:
    return " ".join(
        f"This is sentence number {i}, which is here to fill space." for i in range(count)
    )


def test_sentences_keep_their_marks_and_quotes():
    text = 'Hello there. "Is it you?" she asked…  Yes!\n\nA new paragraph\nwith a line break. End'
    assert split_sentences(text) == [
        "Hello there.",
        '"Is it you?"',
        "she asked…",
        "Yes!",
        "A new paragraph\nwith a line break.",
        "End",
    ]


def test_short_text_is_one_request_and_blank_is_none():
    assert split_for_requests("  Hello there.  ") == ["Hello there."]
    assert split_for_requests("   \n ") == []
    text = "x" * REQUEST_CHAR_LIMIT
    assert split_for_requests(text) == [text]


def test_long_text_splits_at_sentences_in_order():
    text = numbered(300)  # about 17,000 characters
    assert len(text) > 3 * REQUEST_CHAR_LIMIT
    pieces = split_for_requests(text)
    assert len(pieces) == 4
    assert all(len(p) <= REQUEST_CHAR_LIMIT for p in pieces)
    assert all(p.endswith("space.") for p in pieces), "a piece ended mid-sentence"
    assert " ".join(pieces) == text
    # As few requests as whole sentences allow: each piece is nearly full.
    assert all(len(p) > REQUEST_CHAR_LIMIT - 60 for p in pieces[:-1])


def test_overlong_sentence_cut_at_clauses_then_words_then_hard():
    clause = "and then something else happened, "
    sentence = (clause * 40).strip() + "."
    pieces = split_for_requests(sentence, 200)
    assert all(len(p) <= 200 for p in pieces)
    assert all(p.endswith(",") for p in pieces[:-1])
    assert " ".join(pieces) == sentence

    words = ("word " * 100).strip()
    pieces = split_for_requests(words, 48)
    assert all(len(p) <= 48 and not p.startswith(" ") for p in pieces)
    assert " ".join(pieces) == words

    blob = "y" * 130
    assert split_for_requests(blob, 50) == ["y" * 50, "y" * 50, "y" * 30]


def test_limit_must_be_positive():
    with pytest.raises(ValueError):
        split_for_requests("hello", 0)


@pytest.mark.parametrize("seed", range(5))
def test_aligner_rejoins_samples_split_across_chunks(seed):
    rng = random.Random(seed)
    data = bytes(rng.randrange(256) for _ in range(2 * 1000))
    aligner = PcmAligner()
    out = bytearray()
    position = 0
    while position < len(data):
        size = rng.choice([1, 2, 3, 7, 64, 513])
        piece = aligner.feed(data[position : position + size])
        assert len(piece) % 2 == 0, "a chunk of half samples was handed on"
        out += piece
        position += size
    assert bytes(out) == data
    assert aligner.pending == 0


def test_aligner_holds_back_a_trailing_odd_byte():
    aligner = PcmAligner()
    assert aligner.feed(b"\x01") == b""
    assert aligner.pending == 1
    assert aligner.feed(b"\x02\x03") == b"\x01\x02"
    assert aligner.pending == 1
    assert aligner.feed(b"") == b""
