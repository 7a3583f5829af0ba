"""Memory end to end: the real bot, the loopback Discord, a fake LLM scripted to
answer the extraction prompt with facts."""

from __future__ import annotations

import asyncio
import sqlite3

import hark_memory
from memory_support import (
    Brain,
    facts,
    last_prompt,
    memory_config,
    memory_plugins,
    replies,
    wait_for_facts,
)

import hark
from hark.testing.harness import BotHarness


async def test_a_fact_from_general_comes_back_in_another_channel_after_a_restart(
    tmp_path, brain: Brain, db_config
):
    plugins, llm = memory_plugins(brain)
    config = {**memory_config(), **db_config}
    async with BotHarness(tmp_path, plugins=plugins, config=config) as h:
        alice = h.member.user.id
        lobby = h.server.create_text_channel(h.guild, "lobby")
        brain.facts = [{"subject": alice, "text": "has a cat named Miso", "importance": 4}]
        assert (await h.ask("robot, my cat is called Miso")).content == "Noted."
        [row] = await wait_for_facts(h, 1)
        # Who said it, where, about whom.
        _, space, subject, text, importance, said_by, guild_id, channel_id = row
        assert (space, subject, text, importance) == (
            f"guild:{h.guild.id}",
            alice,
            "has a cat named Miso",
            4,
        )
        assert (said_by, guild_id, channel_id) == (alice, h.guild.id, h.channel.id)
        # The extraction prompt had the exchange, with the speaker's id.
        talk = brain.extractions[0][1].content
        assert "my cat is called Miso" in talk and f"user {alice}" in talk

        await h.restart()
        await h.ask("robot, what is my cat called?", channel=lobby)
        prompt = last_prompt(llm)
        assert "has a cat named Miso" in prompt
        # Memory sits after the persona, before the history and the message.
        system = replies(llm)[-1].messages[0]
        assert system.role == "system" and "Long-term memory" in system.content


async def test_memory_never_crosses_to_another_server(tmp_path, brain: Brain, db_config):
    plugins, llm = memory_plugins(brain)
    config = {**memory_config(), **db_config}
    async with BotHarness(tmp_path, plugins=plugins, config=config) as h:
        alice = h.member.user.id
        other = h.server.create_guild("Other Server")
        elsewhere = h.server.create_text_channel(other, "chat")
        # The same person is a member of both servers.
        h.server.create_member(other, user=h.member.user)
        brain.facts = [{"subject": alice, "text": "has a cat named Miso", "importance": 4}]
        await h.ask("robot, my cat is called Miso")
        await wait_for_facts(h, 1)

        await h.ask("robot, what is my cat called?", channel=elsewhere)
        assert "Miso" not in last_prompt(llm)
        # Nor in a DM with the bot: DMs are a space of their own.
        dm = h.server.create_dm(h.member.user)
        await h.ask("what is my cat called?", channel=dm)
        assert "Miso" not in last_prompt(llm)
        # And !memory there lists nothing.
        shown = await h.ask("!memory", channel=elsewhere)
        assert "don't remember anything" in shown.content


async def test_forget_me_removes_it_from_the_prompt_and_the_database(
    tmp_path, brain: Brain, db_config
):
    plugins, llm = memory_plugins(brain)
    config = {**memory_config(), **db_config}
    async with BotHarness(tmp_path, plugins=plugins, config=config) as h:
        alice, boss = h.member.user.id, h.admin.user.id
        brain.facts = [
            {"subject": alice, "text": "has a cat named Miso", "importance": 4},
            {"subject": alice, "text": "works night shifts as a nurse", "importance": 3},
            {"subject": "server", "text": "movie night is on Fridays", "importance": 3},
        ]
        await h.ask("robot, my cat is Miso, I work nights as a nurse, movies are on Fridays")
        await wait_for_facts(h, 3)
        brain.facts = [{"subject": boss, "text": "runs the server's quiz", "importance": 3}]
        await h.ask("robot, I run the quiz", author=h.admin)
        await wait_for_facts(h, 4)

        shown = await h.ask("!memory")
        assert "has a cat named Miso" in shown.content and "quiz" not in shown.content
        # Another channel: no history of it there, only memory.
        lobby = h.server.create_text_channel(h.guild, "lobby")
        await h.ask("robot, what is my cat called?", channel=lobby)
        assert "has a cat named Miso" in last_prompt(llm)

        reply = await h.ask("!forget me")
        # Her two facts, and the server fact she told.
        assert reply.content == "Done: I deleted 3 facts about you here."
        assert await facts(h, "said_by = ? OR subject_id = ?", (alice, alice)) == []
        assert [r[3] for r in await facts(h)] == ["runs the server's quiz"]
        await h.ask("robot, what is my cat called?", channel=lobby)
        assert "Miso" not in last_prompt(llm) and "Long-term memory" not in last_prompt(llm)
        assert (await h.ask("!forget me")).content == "I had nothing stored about you here."

    # The rows are gone from the database itself, full-text index included.
    if "database_url" in db_config:
        import asyncpg

        pg = await asyncpg.connect(db_config["database_url"])
        try:
            rows = [tuple(r) for r in await pg.fetch("SELECT text FROM memory_facts")]
            hits = await pg.fetch(
                "SELECT id FROM memory_facts WHERE search @@ to_tsquery('english', 'miso')"
            )
        finally:
            await pg.close()
    else:
        conn = sqlite3.connect(tmp_path / "hark.sqlite3")
        try:
            rows = conn.execute("SELECT text FROM memory_facts").fetchall()
            hits = conn.execute(
                "SELECT rowid FROM memory_facts_fts WHERE memory_facts_fts MATCH 'Miso'"
            ).fetchall()
        finally:
            conn.close()
    assert rows == [("runs the server's quiz",)] and hits == []


async def test_a_member_cannot_read_or_delete_another_members_memory(tmp_path, brain: Brain):
    plugins, _ = memory_plugins(brain)
    async with BotHarness(tmp_path, plugins=plugins, config=memory_config()) as h:
        alice = h.member.user.id
        bob = h.server.create_member(h.guild, "bob")
        brain.facts = [{"subject": alice, "text": "is allergic to peanuts", "importance": 5}]
        await h.ask("robot, I'm allergic to peanuts")
        [row] = await wait_for_facts(h, 1)
        fact_id = row[0]

        refused = await h.ask(f"!memory about {h.member.user.id}", author=bob)
        assert "peanuts" not in refused.content
        refused = await h.ask(f"!memory forget {fact_id}", author=bob)
        assert "Forgotten" not in refused.content
        assert len(await facts(h)) == 1

        shown = await h.ask(f"!memory about {h.member.user.id}", author=h.admin)
        assert "is allergic to peanuts" in shown.content and f"#{fact_id}" in shown.content
        # The subject may delete it.
        done = await h.ask(f"!memory forget {fact_id}")
        assert done.content == f"Forgotten: fact #{fact_id}."
        assert await facts(h) == []


async def test_the_size_cap_evicts_the_least_important_and_oldest(
    tmp_path, brain: Brain, db_config
):
    plugins, _ = memory_plugins(brain)
    config = {**memory_config(max_facts=3), **db_config}
    async with BotHarness(tmp_path, plugins=plugins, config=config) as h:
        alice = h.member.user.id
        said = [
            ("likes green tea", 2),
            ("plays the cello", 5),
            ("lives in Lyon", 3),
            ("collects stamps", 2),  # as unimportant as the tea, but newer
            ("speaks Portuguese", 4),
        ]
        for number, (text, importance) in enumerate(said, start=1):
            brain.facts = [{"subject": alice, "text": text, "importance": importance}]
            await h.ask(f"robot, fact number {number}")
            await wait_for_facts(h, min(number, 3))
            await asyncio.sleep(0.01)  # distinct times
        await asyncio.sleep(0.3)
        texts = sorted(r[3] for r in await facts(h))
        assert texts == ["lives in Lyon", "plays the cello", "speaks Portuguese"]


async def test_the_cost_cap_limits_extraction_calls(tmp_path, brain: Brain):
    plugins, _ = memory_plugins(brain)
    config = memory_config(extractions_per_hour=2)
    async with BotHarness(tmp_path, plugins=plugins, config=config) as h:
        for n in range(4):
            await h.ask(f"robot, message {n}")
        await asyncio.sleep(1.5)  # three worker ticks: nothing more may go out
        assert len(brain.extractions) == 2
        # The rest waits, queued (not lost), for the cap to free up.
        memory = h.bot.get_cog("Memory").memory
        assert len(memory.pending[f"guild:{h.guild.id}"]) == 2


async def test_a_generator_failing_in_extraction_leaves_replies_untouched(tmp_path, brain: Brain):
    plugins, llm = memory_plugins(brain)
    async with BotHarness(tmp_path, plugins=plugins, config=memory_config()) as h:
        brain.facts = hark.ProviderConnectionError("the LLM went away")
        assert (await h.ask("robot, my cat is called Miso")).content == "Noted."
        async with asyncio.timeout(10):
            while not brain.extractions:
                await asyncio.sleep(0.02)
        # Bad JSON next: dropped too.
        brain.facts = "I think the facts are: the cat, maybe?"
        assert (await h.ask("robot, and my dog is Rex")).content == "Noted."
        async with asyncio.timeout(10):
            while len(brain.extractions) < 2:
                await asyncio.sleep(0.02)
        brain.answer = "Still here."
        assert (await h.ask("robot, hello again")).content == "Still here."
        await asyncio.sleep(0.2)
        assert await facts(h) == []
        # Nothing was posted but the three replies.
        bot_posts = [m for m in h.server.messages(h.channel) if m.author.id == h.server.bot_user.id]
        assert [m.content for m in bot_posts] == ["Noted.", "Noted.", "Still here."]
        assert len(replies(llm)) == 3


async def test_secrets_are_never_stored(tmp_path, brain: Brain):
    plugins, _ = memory_plugins(brain)
    async with BotHarness(tmp_path, plugins=plugins, config=memory_config()) as h:
        alice = h.member.user.id
        key = "sk-or-v1-" + "a1b2c3d4" * 6
        brain.facts = [
            {"subject": alice, "text": f"uses the API key {key}", "importance": 5},
            {"subject": alice, "text": "is building a Discord bot", "importance": 3},
        ]
        await h.ask(f"robot, my key is {key}, I'm building a bot")
        rows = await wait_for_facts(h, 1)
        await asyncio.sleep(0.2)
        assert [r[3] for r in await facts(h)] == ["is building a Discord bot"]
        assert all(key not in r[3] for r in rows)
        # Not even sent to the extraction prompt.
        assert key not in brain.extractions[0][1].content


async def test_a_correction_replaces_the_old_fact(tmp_path, brain: Brain, db_config):
    plugins, llm = memory_plugins(brain)
    config = {**memory_config(), **db_config}
    async with BotHarness(tmp_path, plugins=plugins, config=config) as h:
        alice = h.member.user.id
        brain.facts = [{"subject": alice, "text": "lives in Lyon", "importance": 3}]
        await h.ask("robot, I live in Lyon")
        [(fact_id, *_)] = await wait_for_facts(h, 1)
        brain.facts = [
            {"subject": alice, "text": "lives in Marseille", "importance": 3, "replaces": fact_id}
        ]
        await h.ask("robot, actually I moved to Marseille")
        async with asyncio.timeout(10):
            while (await facts(h))[0][3] != "lives in Marseille":
                await asyncio.sleep(0.02)
        # The known fact, with its id, was in the second extraction prompt.
        assert f"{fact_id}, user {alice}: lives in Lyon" in brain.extractions[1][0].content
        # Near-duplicate wording about the same person updates instead of adding.
        brain.facts = [{"subject": alice, "text": "Lives in Marseille.", "importance": 4}]
        await h.ask("robot, Marseille is home now")
        async with asyncio.timeout(10):
            while (await facts(h))[0][4] != 4:
                await asyncio.sleep(0.02)
        assert [(r[0], r[3]) for r in await facts(h)] == [(fact_id, "Lives in Marseille.")]
        await h.ask("robot, where do I live?")
        prompt = last_prompt(llm)  # (the channel's history still has "I live in Lyon")
        assert "lives in Lyon" not in prompt and "- Lives in Marseille." in prompt


async def test_memory_off_in_a_channel_and_on_again(tmp_path, brain: Brain):
    plugins, llm = memory_plugins(brain)
    async with BotHarness(tmp_path, plugins=plugins, config=memory_config()) as h:
        alice = h.member.user.id
        brain.facts = [{"subject": alice, "text": "has a cat named Miso", "importance": 4}]
        await h.ask("robot, my cat is Miso")
        await wait_for_facts(h, 1)

        refused = await h.ask("!memory off channel")
        assert "Memory is off" not in refused.content
        done = await h.ask("!memory off channel", author=h.admin)
        assert done.content.startswith("Memory is off: nothing is learned or recalled in this")
        await h.ask("robot, what's my cat called? also I like jazz")
        assert "has a cat named Miso" not in last_prompt(llm)
        await asyncio.sleep(0.3)
        assert len(brain.extractions) == 1  # nothing learned here now
        # Other channels still remember.
        lobby = h.server.create_text_channel(h.guild, "lobby")
        await h.ask("robot, what's my cat called?", channel=lobby)
        assert "has a cat named Miso" in last_prompt(llm)

        await h.ask("!memory on channel", author=h.admin)
        await h.ask("robot, what's my cat called?")
        assert "has a cat named Miso" in last_prompt(llm)
        # The same switch as `!config memory enabled`.
        resolved = h.bot.host.settings("memory", guild_id=h.guild.id, channel_id=h.channel.id)
        assert resolved.values.enabled is True and resolved.origin("enabled").layer == "channel"


async def test_the_tools_remember_and_recall(tmp_path, brain: Brain, db_config):
    from hark.testing.fakes import tool_call, tool_results

    def model(messages):
        if messages[0].content.startswith(hark_memory.EXTRACTION_MARKER):
            return brain(messages)
        results = tool_results(messages)
        if results:
            return f"Tool said: {results[0]}"
        text = messages[-1].content
        if "remember" in text:
            return [tool_call("remember", text="prefers to be called Al")]
        return [tool_call("recall", query="called")]

    plugins, llm = memory_plugins(model, supports_tools=True)
    config = {**memory_config(), **db_config}
    async with BotHarness(tmp_path, plugins=plugins, config=config) as h:
        reply = await h.ask("robot, please remember I prefer to be called Al")
        assert reply.content.startswith("Tool said: saved as fact ")
        rows = await facts(h)
        assert [(r[2], r[3]) for r in rows] == [(h.member.user.id, "prefers to be called Al")]
        reply = await h.ask("robot, what do I like to be called?")
        assert reply.content == "Tool said: - (alice) prefers to be called Al"
        assert "remember" in llm.offered_tools[0] and "recall" in llm.offered_tools[0]
