"""hark.text.split_message: Discord-sized parts, content preserved, code blocks intact."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hark import text as text_module
from hark.text import MESSAGE_LIMIT, split_message

FENCE_LINE = re.compile(r"^```\S*$")


def fence_lines(part: str) -> list[str]:
    return [line for line in part.split("\n") if FENCE_LINE.match(line)]


def squashed(text: str) -> str:
    """Text without fence lines or whitespace: what must survive splitting."""
    kept = [line for line in text.split("\n") if not FENCE_LINE.match(line)]
    return "".join("".join(kept).split())


def check_parts(original: str, parts: list[str], limit: int) -> None:
    assert all(len(part) <= limit for part in parts), [len(p) for p in parts]
    assert all(part.strip() for part in parts), "blank parts"
    assert squashed("\n".join(parts)) == squashed(original), "content changed"
    for part in parts:
        assert len(fence_lines(part)) % 2 == 0, f"unbalanced code block in {part!r}"


# -- examples ------------------------------------------------------------------


def test_short_text_is_one_part() -> None:
    assert split_message("hello") == ["hello"]
    assert split_message("x" * MESSAGE_LIMIT) == ["x" * MESSAGE_LIMIT]
    assert split_message("") == []
    assert split_message("   \n\n  ") == []


def test_prefers_paragraph_boundaries() -> None:
    paragraphs = [f"Paragraph {i}. " + "words " * 50 for i in range(8)]  # ~320 chars each
    paragraphs = [p.strip() for p in paragraphs]
    original = "\n\n".join(paragraphs)
    parts = split_message(original, 1000)
    check_parts(original, parts, 1000)
    assert len(parts) > 1
    for part in parts:  # every part is whole paragraphs
        assert all(chunk in paragraphs for chunk in part.split("\n\n")), part[:60]


def test_prefers_sentence_boundaries_over_words() -> None:
    sentences = [f"Sentence number {i} says something fairly ordinary here." for i in range(60)]
    original = " ".join(sentences)
    parts = split_message(original, 500)
    check_parts(original, parts, 500)
    assert len(parts) > 1
    assert all(part.endswith(".") for part in parts)


def test_falls_back_to_word_boundaries() -> None:
    words = [f"word{i}" for i in range(600)]
    original = " ".join(words)
    parts = split_message(original, 300)
    check_parts(original, parts, 300)
    for part in parts:
        assert all(w in words for w in part.split()), "a word was cut in two"


def test_single_long_word_is_hard_split() -> None:
    original = "a" * 5000
    parts = split_message(original)
    assert len(parts) == 3
    assert all(len(p) <= MESSAGE_LIMIT for p in parts)
    assert "".join(parts) == original


def test_code_block_is_closed_and_reopened_with_its_language() -> None:
    code = "\n".join(f"    value_{i} = compute({i})  # step {i}" for i in range(120))
    original = f"Here is the script:\n\n```python\n{code}\n```\n\nThat's all."
    parts = split_message(original, 800)
    check_parts(original, parts, 800)
    assert len(parts) >= 4
    assert parts[0].startswith("Here is the script:")
    assert parts[0].endswith("\n```")
    for part in parts[1:-1]:
        assert part.startswith("```python\n") and part.endswith("\n```")
    assert parts[-1].endswith("That's all.")
    # indentation inside the block is kept on reopened parts
    assert parts[1].split("\n")[1].startswith("    value_")


def test_text_around_several_code_blocks() -> None:
    block = "```js\n" + "\n".join(f"let v{i} = {i};" for i in range(40)) + "\n```"
    original = "\n\n".join(["Intro text.", block, "Middle text.", block, "Outro."])
    parts = split_message(original, 300)
    check_parts(original, parts, 300)
    assert all(fence in ("```js", "```") for part in parts for fence in fence_lines(part))


def test_one_line_code_block_is_not_an_open_fence() -> None:
    original = "```inline```\n" + "\n\n".join("word " * 100 for _ in range(6))
    parts = split_message(original, 600)
    assert all(part.count("```") % 2 == 0 for part in parts)
    assert sum(part.count("```inline```") for part in parts) == 1


def test_tiny_limit_terminates(monkeypatch) -> None:
    real_cut = text_module._cut_point
    calls = 0

    def counting_cut(text: str, limit: int) -> int:
        nonlocal calls
        calls += 1
        if calls > 1000:
            raise RuntimeError("split_message is not making progress")
        return real_cut(text, limit)

    monkeypatch.setattr(text_module, "_cut_point", counting_cut)
    try:
        parts = split_message("hello world", limit=4)
    except ValueError:
        return  # refusing a limit that small is fine too
    assert all(len(p) <= 4 for p in parts)


# -- properties ----------------------------------------------------------------

WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789'-,", min_size=1, max_size=12)
LONG_WORD = st.builds(lambda n, c: c * n, st.integers(100, 2500), st.sampled_from("xyz"))
SENTENCE = st.builds(
    lambda words, end: " ".join(words) + end,
    st.lists(st.one_of(WORD, WORD, WORD, WORD, LONG_WORD), min_size=1, max_size=30),
    st.sampled_from([".", "!", "?", ";", ""]),
)
PROSE = st.builds(" ".join, st.lists(SENTENCE, min_size=1, max_size=8))
CODE_LINE = st.builds(
    lambda indent, words: " " * indent + " ".join(words),
    st.integers(0, 8),
    st.lists(WORD, min_size=0, max_size=10),
)
CODE_BLOCK = st.builds(
    lambda lang, lines: f"```{lang}\n" + "\n".join(lines) + "\n```",
    st.sampled_from(["", "py", "python", "js", "diff"]),
    st.lists(CODE_LINE, min_size=1, max_size=60),
)
DOCUMENT = st.builds(
    lambda blocks, sep: sep.join(blocks),
    st.lists(st.one_of(PROSE, PROSE, CODE_BLOCK), min_size=1, max_size=10),
    st.sampled_from(["\n\n", "\n"]),
)


@settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(original=DOCUMENT, limit=st.sampled_from([80, 150, 400, 1000, MESSAGE_LIMIT]))
def test_split_properties(original: str, limit: int) -> None:
    parts = split_message(original, limit)
    check_parts(original, parts, limit)
    if len(original) <= limit and original.strip():
        assert parts == [original]
