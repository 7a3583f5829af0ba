"""End-to-end text conversation: real discord.py client, real HarkBot, loopback Discord.

The generator is a scriptable fake (hark.testing.fakes), so these tests pin the
core's behaviour: triggers, context, streaming, splitting, mentions, failures,
history persistence and commands. The real LLM plugins are exercised end to end
in tests/e2e at the repository root.
"""

from __future__ import annotations

import asyncio
import logging
import re

import pytest

from hark.chat.streaming import TYPING_DELAY, TYPING_REPOST_GAP
from hark.providers.errors import ProviderStatusError
from hark.testing.discord.permissions import MANAGE_MESSAGES, SEND_MESSAGES
from hark.testing.fakes import EchoGenerator, FakeGenerator, fake_plugin
from hark.testing.harness import BotHarness

CHAT = {"trigger_names": ["robot", "mr robot"], "edit_interval": 0.05, "rate_limit": "0"}


@pytest.fixture
async def chat(tmp_path):
    """A harness whose generator echoes the last user message."""
    generator = EchoGenerator()
    h = BotHarness(tmp_path, plugins={"fake_llm": fake_plugin(generator)}, config=CHAT)
    h.generator = generator
    await h.start()
    try:
        yield h
    finally:
        await h.close()


async def start(tmp_path, generator, **config) -> BotHarness:
    h = BotHarness(
        tmp_path, plugins={"fake_llm": fake_plugin(generator)}, config={**CHAT, **config}
    )
    h.generator = generator
    await h.start()
    return h


def bot_messages(h: BotHarness, channel=None) -> list:
    return [
        m for m in h.server.messages(channel or h.channel) if m.author.id == h.server.bot_user.id
    ]


async def test_callsign_gets_a_reply_that_references_the_message(chat: BotHarness):
    # A model slower than TYPING_DELAY to start: the bot is shown typing meanwhile.
    chat.generator.delay = 0.5
    question = None

    async def post():
        nonlocal question
        question = await chat.say("hey Robot, what's the capital of France?")

    waiter = asyncio.create_task(chat.next_reply())
    await post()
    reply = await waiter
    assert await chat.final(reply) == "hey Robot, what's the capital of France?"
    assert reply.reference_id == question.id
    assert chat.server.typing_events, "typing indicator while waiting"


async def test_a_quick_answer_is_one_request_without_a_typing_indicator(chat: BotHarness):
    """A reply that starts within TYPING_DELAY and fits one interval is posted once,
    final: no typing indicator, no edit, the only REST call is the post itself."""
    await chat.final(await chat.ask("robot, warm up"))
    await asyncio.sleep(0.4)  # any indicator of the first turn would have fired by now
    typing_before, since = len(chat.server.typing_events), len(chat.server.requests)
    reply = await chat.ask("robot, quick one")
    assert await chat.final(reply) == "robot, quick one"
    await asyncio.sleep(0.4)
    assert len(chat.server.typing_events) == typing_before
    assert reply.edits == []
    calls = [(r.method, r.path) for r in chat.server.requests[since:]]
    assert calls == [("POST", f"/api/v10/channels/{chat.channel.id}/messages")]


async def test_typing_indicator_refused_costs_nothing_but_the_indicator(tmp_path):
    """A channel where typing fails (the server answers 403) still gets the answer."""
    h = await start(tmp_path, EchoGenerator(delay=0.5))
    try:
        h.server.fail_next("POST", f"/channels/{h.channel.id}/typing", status=403)
        reply = await h.ask("robot, slow one")
        assert await h.final(reply) == "robot, slow one"
    finally:
        await h.close()


async def test_turns_waiting_in_one_channel_share_one_typing_indicator(tmp_path):
    """Three slow turns in one channel: one typing request while they all wait, not
    three; once a reply is posted (it hides the indicator) while others still wait,
    the indicator is shown again; after the last reply, no more."""
    gates = {name: asyncio.Event() for name in ("one", "two", "three")}

    async def answer(messages):
        word = messages[-1].content.split()[-1]
        await gates[word].wait()
        return f"answer {word}"

    h = await start(tmp_path, FakeGenerator(answer))
    try:
        for word in gates:
            await h.say(f"robot, {word}")
        await asyncio.sleep(TYPING_DELAY + 0.4)
        assert len(h.server.typing_events) == 1
        waiter = asyncio.create_task(h.next_reply())
        gates["one"].set()
        assert await h.final(await waiter) == "answer one"
        # Shown again once the repost gap (from the first request) has passed.
        await asyncio.sleep(TYPING_REPOST_GAP)
        assert len(h.server.typing_events) == 2
        for word in ("two", "three"):
            waiter = asyncio.create_task(h.next_reply())
            gates[word].set()
            assert await h.final(await waiter) == f"answer {word}"
        shown = len(h.server.typing_events)
        await asyncio.sleep(TYPING_REPOST_GAP + 0.5)
        assert len(h.server.typing_events) == shown  # nobody waits: no more requests
        assert {e.channel_id for e in h.server.typing_events} == {h.channel.id}
    finally:
        await h.close()


@pytest.mark.parametrize("text", ["robots are cool", "microbot here", "nothing to see"])
async def test_non_trigger_messages_get_nothing(chat: BotHarness, text: str):
    await chat.say(text)
    await chat.expect_silence(within=0.5)
    assert chat.generator.requests == []


async def test_mention_reply_dm_and_multiword_callsign_trigger(chat: BotHarness):
    me = chat.server.bot_user
    reply = await chat.ask(f"<@{me.id}> hi")
    assert (await chat.final(reply)).endswith(" hi")
    # a reply to the bot's message, with no callsign
    follow = await chat.ask("and then?", reference=reply)
    assert await chat.final(follow) == "and then?"
    # "mr robot" across a space, any case
    assert "MR   ROBOT" in await chat.final(await chat.ask("ok MR   ROBOT listen"))
    # DMs
    dm = chat.server.create_dm(chat.member.user)
    assert await chat.final(await chat.ask("hello in private", channel=dm)) == "hello in private"


async def test_bots_are_ignored(chat: BotHarness):
    other = chat.server.create_member(chat.guild, "otherbot", bot=True)
    await chat.say("robot, talk to me", author=other)
    await chat.expect_silence(within=0.5)


async def test_commands_are_processed_exactly_once(chat: BotHarness):
    await chat.say("!ping robot")
    reply = await chat.next_reply()
    assert reply.content.startswith("Pong!")
    await chat.expect_silence(within=0.5)
    assert chat.generator.requests == []


async def test_history_reaches_the_model_and_survives_restart(chat: BotHarness):
    await chat.final(await chat.ask("robot, my name is Alice"))
    await chat.history(2, exact=True)
    await chat.final(await chat.ask("robot, I like tea", author=chat.admin))
    last = chat.generator.requests[-1].messages
    assert last[0].role == "system" and "friendly" in last[0].content
    bot_name = chat.bot.get_guild(chat.guild.id).me.display_name
    assert [(m.role, m.name, m.content) for m in last[1:3]] == [
        ("user", "alice", "robot, my name is Alice"),
        ("assistant", bot_name, "robot, my name is Alice"),
    ]
    assert last[-1].role == "user" and last[-1].name == "boss"

    await chat.history(4, exact=True)
    await chat.restart()
    await chat.final(await chat.ask("robot, what's my name?"))
    after = chat.generator.requests[-1].messages
    contents = [m.content for m in after]
    assert "robot, my name is Alice" in contents and "robot, I like tea" in contents


async def test_history_is_bounded_by_depth(tmp_path):
    h = await start(tmp_path, EchoGenerator(), history_depth=4)
    try:
        for i in range(4):
            await h.final(await h.ask(f"robot {i}"))
            await h.history(2 * (i + 1), exact=True)
        messages = h.generator.requests[-1].messages
        history = [m for m in messages[1:-1]]
        assert len(history) == 4  # two exchanges of (user, assistant)
        assert history[0].content == "robot 1"
    finally:
        await h.close()


async def test_long_reply_is_split_with_code_fences_intact(tmp_path):
    code = "\n".join(f"print('line {i:04d}')  # {'x' * 30}" for i in range(90))
    text = "Here is the program:\n\n```python\n" + code + "\n```\n\n" + ("Done. " * 300)
    assert len(text) > 5000
    h = await start(tmp_path, FakeGenerator(text, chunk_size=400))
    try:
        await h.say("robot, write it")
        async with asyncio.timeout(15):
            while True:
                parts = bot_messages(h)
                if (
                    parts
                    and "Done. Done." in parts[-1].content
                    and not parts[-1].content.endswith("…")
                ):
                    break
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        parts = [m.content for m in bot_messages(h)]
        assert len(parts) >= 3
        assert all(len(p) <= 2000 for p in parts)
        for p in parts:
            assert p.count("```") % 2 == 0, p[:80]
        # the code survives: every line appears once, in order
        joined = "\n".join(parts)
        found = re.findall(r"print\('line (\d{4})'\)", joined)
        assert found == [f"{i:04d}" for i in range(90)]
    finally:
        await h.close()


async def test_model_output_pings_nobody(tmp_path):
    script = {}
    h = await start(tmp_path, FakeGenerator(lambda messages: script["reply"]))
    try:
        admin, role = h.admin.user.id, h.guild.everyone_role.id
        script["reply"] = f"@everyone @here <@{admin}> <@&{role}> look!"
        reply = await h.ask("robot, ping everyone")
        await h.final(reply)
        assert "@everyone" in reply.content
        assert not reply.mention_everyone and reply.mentions == [] and reply.mention_roles == []
        assert reply.allowed_mentions is not None and reply.allowed_mentions.get("parse") == []
    finally:
        await h.close()


async def test_provider_failure_gives_one_notice_and_no_history(tmp_path):
    failures = [ProviderStatusError("unavailable", status=503) for _ in range(3)]
    h = await start(tmp_path, FakeGenerator("fine now", fail_with=failures))
    try:
        notice = await h.ask("robot, are you there?")
        assert "having trouble (HTTP 503)" in notice.content
        assert "Traceback" not in notice.content
        await h.expect_silence(within=0.5)
        assert await h.bot.runtime.history.count(h.channel.id) == 0
        # the next turn works and carries no trace of the failed one
        reply = await h.ask("robot, and now?")
        assert await h.final(reply) == "fine now"
        assert [m.content for m in h.generator.requests[-1].messages[1:]] == ["robot, and now?"]
        await h.history(2, exact=True)
    finally:
        await h.close()


async def test_cut_off_stream_is_marked_and_not_recorded(tmp_path):
    h = await start(
        tmp_path,
        FakeGenerator("a long answer " * 20, chunk_size=10, delay=0.03, fail_after_chars=40),
    )
    try:
        await h.say("robot, go")
        notice = await h.next_reply(check=lambda m: "Sorry" in m.content)
        assert "couldn't reach" in notice.content
        partial = bot_messages(h)[0]
        assert partial.content.endswith("[cut off]")
        assert await h.bot.runtime.history.count(h.channel.id) == 0
    finally:
        await h.close()


async def test_rate_limit_holds(tmp_path):
    h = await start(tmp_path, EchoGenerator(), rate_limit="2/60")
    try:
        for i in range(2):
            await h.final(await h.ask(f"robot {i}"))
        notice = await h.ask("robot 2")
        assert "faster than I can think" in notice.content
        await h.say("robot 3")
        await h.expect_silence(within=0.5)
        assert len(h.generator.requests) == 2
        # other users are not affected
        assert await h.final(await h.ask("robot hi", author=h.admin)) == "robot hi"
    finally:
        await h.close()


async def test_streaming_edits_the_reply_as_it_grows(tmp_path):
    h = await start(
        tmp_path, FakeGenerator("one two three four five six seven", chunk_size=4, delay=0.05)
    )
    try:
        reply = await h.ask("robot, count")
        assert await h.final(reply) == "one two three four five six seven"
        assert len(reply.edits) >= 2  # it grew in place
    finally:
        await h.close()


async def test_ask_without_history_and_slash_ask(chat: BotHarness):
    await chat.final(await chat.ask("robot, remember pineapples"))
    await chat.history(2, exact=True)
    reply = await chat.ask("!ask what fruit?")
    assert await chat.final(reply) == "what fruit?"
    sent = chat.generator.requests[-1].messages
    assert [m.role for m in sent] == ["system", "user"]
    assert await chat.bot.runtime.history.count(chat.channel.id) == 2  # !ask wrote nothing

    inter = await chat.server.invoke_slash(
        chat.guild, chat.channel, chat.member, "ask", options={"question": "2+2?"}
    )
    response = await inter.wait_response()
    assert (await chat.final(response)) == "2+2?"


async def test_reset_needs_manage_messages(chat: BotHarness):
    await chat.final(await chat.ask("robot hello"))
    await chat.history(2, exact=True)
    refused = await chat.ask("!reset")
    assert "Manage Messages" in refused.content
    assert await chat.bot.runtime.history.count(chat.channel.id) == 2
    moderator = chat.server.create_member(chat.guild, "mod", permissions=MANAGE_MESSAGES)
    done = await chat.ask("!reset", author=moderator)
    assert "History cleared (2 entries)" in done.content
    assert await chat.bot.runtime.history.count(chat.channel.id) == 0


async def test_persona_per_server_and_channel(chat: BotHarness):
    shown = await chat.ask("!persona")
    assert "default persona" in shown.content
    refused = await chat.ask("!persona You are a pirate.")
    assert "Manage Server" in refused.content
    await chat.ask("!persona You are a pirate named {bot_name}.", author=chat.admin)
    await chat.final(await chat.ask("robot ahoy"))
    bot_name = chat.bot.get_guild(chat.guild.id).me.display_name
    assert chat.generator.requests[-1].messages[0].content == f"You are a pirate named {bot_name}."
    await chat.ask("!persona channel You are a librarian.", author=chat.admin)
    await chat.final(await chat.ask("robot shh"))
    assert chat.generator.requests[-1].messages[0].content == "You are a librarian."
    await chat.ask("!persona channel reset", author=chat.admin)
    await chat.final(await chat.ask("robot again"))
    assert chat.generator.requests[-1].messages[0].content.startswith("You are a pirate")
    # Every reset word of hark.RESET_WORDS resets, here as in !config.
    await chat.ask("!persona channel You are a librarian.", author=chat.admin)
    await chat.ask("!persona channel unset", author=chat.admin)
    await chat.final(await chat.ask("robot once more"))
    assert chat.generator.requests[-1].messages[0].content.startswith("You are a pirate")


async def test_model_show_and_set(tmp_path):
    h = await start(tmp_path, FakeGenerator("ok", models=["small", "large"]))
    try:
        shown = await h.ask("!model")
        assert "uses model" in shown.content
        refused = await h.ask("!model large")
        assert "Manage Server" in refused.content
        unknown = await h.ask("!model huge", author=h.admin)
        assert "no model `huge`" in unknown.content and "`small`" in unknown.content
        done = await h.ask("!model large", author=h.admin)
        assert "now uses model `large`" in done.content
        await h.final(await h.ask("robot hi"))
        assert h.generator.requests[-1].model == "large"
        await h.restart()
        await h.final(await h.ask("robot hi again"))
        assert h.generator.requests[-1].model == "large"
    finally:
        await h.close()


async def test_no_generator_gives_a_clear_notice(tmp_path):
    async with BotHarness(tmp_path, config=CHAT) as h:
        notice = await h.ask("robot hello?")
        assert "no LLM is enabled here" in notice.content


async def test_messages_during_a_gateway_drop_are_answered_after_resume(chat: BotHarness):
    await chat.server.drop_gateway(resumable=True)
    # Posted while the bot is disconnected: replayed on RESUME, then answered.
    reply = await chat.ask("robot, are you back?", timeout=30)
    assert await chat.final(reply) == "robot, are you back?"
    await chat.server.wait_for_resume(1)
    assert chat.server.identify_count == 1 and chat.server.resume_count >= 1


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


@pytest.fixture
def tracebacks():
    handler = _Errors()
    logging.getLogger().addHandler(handler)
    try:
        yield handler.records
    finally:
        logging.getLogger().removeHandler(handler)


async def test_a_channel_the_bot_cannot_post_in_gives_no_tracebacks(tmp_path, tracebacks):
    h = await start(tmp_path, EchoGenerator(), rate_limit="1/60")
    try:
        await h.final(await h.ask("robot hi"))
        h.server.set_overwrite(h.channel, h.server.bot_member(h.guild), deny=SEND_MESSAGES)
        await asyncio.sleep(0.2)
        await h.say("robot again")  # over the rate limit: the notice is refused by Discord
        await h.say("!plugins")  # a command whose reply is refused
        await h.say("!nope")
        await asyncio.sleep(1.0)
        assert not tracebacks, [(r.name, r.getMessage()) for r in tracebacks]
    finally:
        await h.close()


async def test_slash_plugins_answers_even_when_the_command_sync_is_rate_limited(chat: BotHarness):
    chat.server.fail_next("PUT", r"/guilds/\d+/commands$", 429, retry_after=3.5)
    inter = await chat.server.invoke_slash(
        chat.guild, chat.channel, chat.admin, "plugins", {"plugin": "fake_llm"}, "disable"
    )
    await inter.wait_ack(timeout=8)
    assert not inter.expired
    assert "disabled" in (await inter.wait_response(timeout=15)).content
