"""Nothing on a voice turn's path waits for Discord's REST API: transcripts and
replies are posted in the background, and still appear in order."""

from __future__ import annotations

import asyncio

from voice_support import CONFIG, bot_posts, in_voice, plugin, wait_until

from hark.testing.fakes import FakeSynthesizer, FakeTranscriber
from hark.testing.harness import BotHarness

MESSAGES = r"/channels/\d+/messages$"


async def test_a_slow_discord_delays_neither_the_reply_nor_the_order_of_posts(tmp_path, speech):
    transcriber = FakeTranscriber(["first question", "second question"])
    synthesizer = FakeSynthesizer(seconds_per_char=0.02)  # "first question": ~0.3 s of audio
    async with BotHarness(
        tmp_path, plugins={"v": plugin(transcriber, synthesizer)}, config=CONFIG
    ) as h:
        await in_voice(h, h.member)
        # The next post (the transcript) takes 2 s to go through.
        h.server.delay_next("POST", MESSAGES, 2.0)
        await h.server.speak(h.member, speech)
        # The bot speaks its answer while Discord is still busy with the transcript...
        await h.server.wait_for_bot_audio(h.guild, seconds=0.25, timeout=10)
        assert bot_posts(h, "🎙️") == []
        # ...and a second turn, heard meanwhile, is not held up either.
        h.server.clear_bot_audio(h.guild)
        await asyncio.sleep(0.3)
        await h.server.speak(h.member, speech)
        await h.server.wait_for_bot_audio(h.guild, seconds=0.25, timeout=10)
        # Everything appears, in the order it happened.
        await wait_until(lambda: len(bot_posts(h, "🔊")) == 2, 15)
        posts = [p for p in bot_posts(h) if p.startswith(("🎙️", "🔊"))]
        assert posts == [
            "🎙️ **alice**: first question",
            "🔊 first question",
            "🎙️ **alice**: second question",
            "🔊 second question",
        ]
