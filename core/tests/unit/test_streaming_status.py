"""StreamingReply's status line (while tools run) and notes (after the answer)."""

from __future__ import annotations

from hark.chat.inflight import CUT_OFF
from hark.chat.streaming import StreamingReply


class RecordingTarget:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.contents: dict[int, str] = {}

    async def send(self, content: str, *, first: bool) -> int:
        self.calls.append(("send", content))
        handle = len(self.contents)
        self.contents[handle] = content
        return handle

    async def edit(self, handle: int, content: str) -> None:
        self.calls.append(("edit", content))
        self.contents[handle] = content


async def test_the_status_line_shows_alone_then_gives_way_to_the_answer():
    target = RecordingTarget()
    reply = StreamingReply(target, interval=0)
    await reply.status("using roll_die…")
    assert target.contents == {0: "-# using roll_die…"}
    await reply.feed("You rolled")
    assert target.contents[0] == "You rolled …"
    assert await reply.finish() == "You rolled"
    assert target.contents[0] == "You rolled"


async def test_the_status_line_follows_what_was_said_before_the_tool():
    target = RecordingTarget()
    reply = StreamingReply(target, interval=0)
    await reply.feed("Let me check.")
    await reply.status("using weather, clock…")
    assert target.contents[0] == "Let me check.\n-# using weather, clock…"
    await reply.feed("\n\n")  # the loop's paragraph break is not the answer yet
    assert target.contents[0] == "Let me check.\n-# using weather, clock…"
    await reply.feed("Sunny.")
    assert target.contents[0] == "Let me check.\n\nSunny. …"
    await reply.finish()
    assert target.contents[0] == "Let me check.\n\nSunny."
    assert reply.text == "Let me check.\n\nSunny."


async def test_notes_follow_the_final_text_but_are_not_part_of_it():
    target = RecordingTarget()
    reply = StreamingReply(target, interval=0)
    await reply.feed("Best guess: 4.")
    reply.note("(stopped after 5 rounds of tool calls)")
    assert await reply.finish() == "Best guess: 4."
    assert target.contents[0] == "Best guess: 4.\n-# (stopped after 5 rounds of tool calls)"


async def test_a_reply_that_fails_while_only_the_status_shows_becomes_the_notice():
    target = RecordingTarget()
    reply = StreamingReply(target, interval=0)
    await reply.status("using slow…")
    await reply.abandon("The model failed.")
    assert target.contents == {0: "The model failed."}

    quiet = RecordingTarget()
    reply = StreamingReply(quiet, interval=0)
    await reply.status("using slow…")
    await reply.abandon("")
    assert quiet.contents == {0: CUT_OFF}


async def test_a_status_within_the_interval_waits_for_the_next_flush():
    target = RecordingTarget()
    reply = StreamingReply(target, interval=60)
    await reply.status("using roll_die…")
    await reply.feed("Four.")
    assert target.calls == []
    await reply.finish()
    assert target.calls == [("send", "Four.")]


async def test_a_slow_start_answered_in_one_piece_is_one_post_without_an_edit():
    target = RecordingTarget()
    reply = StreamingReply(target, interval=1.0)
    reply._last_flush -= 5  # the model took longer than the interval to start
    await reply.feed("Paris is the capital of France.")
    assert target.calls == []  # not posted at once with the still-writing marker
    await reply.finish()
    assert target.calls == [("send", "Paris is the capital of France.")]


async def test_a_slow_start_that_keeps_streaming_is_shown_after_the_grace():
    import asyncio

    from hark.chat.streaming import FIRST_POST_GRACE

    target = RecordingTarget()
    reply = StreamingReply(target, interval=1.0)
    reply._last_flush -= 5
    await reply.feed("Once upon")
    await asyncio.sleep(FIRST_POST_GRACE + 0.05)
    assert target.calls == [("send", "Once upon …")]  # the timer posted it
    await reply.feed(" a time")
    await reply.finish()
    assert target.contents[0] == "Once upon a time"
