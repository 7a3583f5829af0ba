"""A sharded bot as operators run it: two `bot run` processes (shards 0 and 1 of 2)
against one loopback Discord (served by this test) and one PostgreSQL.

Each process has its own data dir and its own fake LLM, which answers with the
process's name ("A" runs shard 0, "B" shard 1) and how many messages its prompt held.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hark.testing.discord import ChannelRecord, FakeDiscord, GuildRecord, MessageRecord, UserRecord
from hark.testing.discord.waiters import WaitTimeout
from hark.testing.processes import BotProcess, clean_env, fake_distribution

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

NAMED_LLM = '''
    """Answers at once with this process's name and the size of its prompt."""
    import os

    from hark import hookimpl
    from hark.testing.fakes import FakeGenerator

    NAME = os.environ["FAKE_LLM_NAME"]


    @hookimpl
    def register_generators(register):
        register(FakeGenerator(lambda messages: f"{NAME}: seen {len(messages)}", chunk_size=1000))
'''


@dataclass
class Cluster:
    server: FakeDiscord
    root: Path
    env: dict[str, str]
    guilds: list[GuildRecord] = field(default_factory=list)  # index: the shard
    channels: list[ChannelRecord] = field(default_factory=list)
    alice: UserRecord | None = None
    processes: list[BotProcess] = field(default_factory=list)  # index: the shard

    def process(self, shard: int, **extra: str) -> BotProcess:
        name = "AB"[shard]
        env = {**self.env, "FAKE_LLM_NAME": name, "HARK_DATA_DIR": str(self.root / name)}
        env.update(extra)
        if shard == 0:  # one from the command line, one from the environment
            args = ("run", "--shards", "0", "--shard-count", "2")
            return BotProcess(*args, cwd=self.root, env=env, name=name)
        env.update(HARK_SHARDS="1", HARK_SHARD_COUNT="2")
        return BotProcess("run", cwd=self.root, env=env, name=name)

    async def start(self, **extra: str) -> None:
        """Start both processes at the same moment; wait until both are ready."""
        self.processes = [self.process(shard, **extra) for shard in (0, 1)]
        await asyncio.gather(*(p.start() for p in self.processes))
        await asyncio.gather(
            self.processes[0].wait_for_line("ready: shard 0 of 2", timeout=60),
            self.processes[1].wait_for_line("ready: shard 1 of 2", timeout=60),
        )

    async def stop(self) -> None:
        codes = await asyncio.gather(*(p.stop() for p in self.processes))
        for process, code in zip(self.processes, codes, strict=True):
            assert code == 0, process.output[-3000:]
            assert "Traceback" not in process.output, process.output[-3000:]

    async def ask(
        self, where: ChannelRecord, text: str, *, author: UserRecord | None = None
    ) -> MessageRecord:
        """Post ``text`` and return the bot's next message there."""
        reply = asyncio.create_task(
            self.server.wait_for_message(where, author=self.server.bot_user, timeout=15)
        )
        await asyncio.sleep(0)
        await self.server.post_message(where, author or self.alice, text)
        return await reply

    async def silent(self, where: ChannelRecord, text: str, *, within: float = 1.0) -> None:
        waiting = asyncio.create_task(
            self.server.wait_for_message(where, author=self.server.bot_user, timeout=within)
        )
        await asyncio.sleep(0)
        await self.server.post_message(where, self.alice, text)
        try:
            reply = await waiting
        except WaitTimeout:
            return
        raise AssertionError(f"expected no reply to {text!r}, got {reply.content!r}")


ClusterFactory = Callable[..., Awaitable[Cluster]]


@pytest.fixture
async def make_cluster(tmp_path, postgres_url) -> AsyncIterator[ClusterFactory]:
    made: list[Cluster] = []

    async def make(*, max_concurrency: int = 2, plugins: str = "named_llm,hello") -> Cluster:
        server = FakeDiscord(shard_count=2, max_concurrency=max_concurrency)
        await server.start()
        site = tmp_path / "site"
        if not site.exists():
            fake_distribution(
                site, "named_llm_dist", {"named_llm": "named_llm_mod"}, {"named_llm_mod": NAMED_LLM}
            )
        env = clean_env(
            PYTHONPATH=str(site),
            DISCORD_BOT_TOKEN=server.bot_token,
            DISCORD_API_BASE=server.api_base,
            HARK_DATABASE_URL=postgres_url,
            HARK_LOAD_PLUGINS=plugins,
            BOT_TRIGGER_NAMES="robot",
            CHAT_RATE_LIMIT="0",
        )
        cluster = Cluster(server=server, root=tmp_path, env=env)
        cluster.alice = server.create_user("alice")
        for shard in (0, 1):
            guild = server.create_guild(f"Shard {shard}", shard=shard)
            cluster.guilds.append(guild)
            cluster.channels.append(server.create_text_channel(guild, "general"))
            server.create_member(guild, user=cluster.alice)
        made.append(cluster)
        return cluster

    try:
        yield make
    finally:
        for cluster in made:
            for process in cluster.processes:
                await process.kill()
            await cluster.server.close()
            assert not cluster.server.internal_errors, cluster.server.internal_errors


def names(server: FakeDiscord, guild: GuildRecord) -> set[str]:
    """The slash commands synced for this server (not the global ones)."""
    return {c.name for c in server.state.commands.get(guild.id, {}).values()}


async def test_each_server_is_answered_by_the_process_of_its_shard(make_cluster):
    cluster = await make_cluster()
    await cluster.start()
    c0, c1 = cluster.channels
    for channel, name in ((c0, "A"), (c1, "B"), (cluster.server.create_dm(cluster.alice), "A")):
        reply = await cluster.ask(channel, "robot hello there")
        assert reply.content.startswith(f"{name}: seen "), (name, reply.content)
    # Each process synced the slash commands of its own server.
    for guild in cluster.guilds:
        assert "hello" in names(cluster.server, guild)
    ping = await cluster.ask(c1, "!ping")
    ping = await cluster.server.wait_for_edit(ping, lambda m: "heartbeat" in m.content)
    assert ping.content.endswith("(shard 1 of 2).")
    await asyncio.sleep(0.5)  # a second answer (a process on the wrong shard) would be here
    for channel in (c0, c1):
        bot = cluster.server.bot_user.id
        bot_posts = [m for m in cluster.server.messages(channel) if m.author.id == bot]
        assert len(bot_posts) == (1 if channel is c0 else 2), [m.content for m in bot_posts]
    assert cluster.server.refused_identifies == []
    for process in cluster.processes:
        assert process.lines("runs only some shards") == []  # PostgreSQL: no warning
    await cluster.stop()


async def test_an_owners_global_change_in_one_process_holds_in_the_other_within_a_second(
    make_cluster,
):
    cluster = await make_cluster()
    await cluster.start()
    c0, c1 = cluster.channels
    owner = cluster.server.owner
    assert (await cluster.ask(c1, "!hello")).content == "Hello, alice!"

    done = await cluster.ask(c0, "!config hello greeting Howdy --global", author=owner)
    assert "Howdy" in done.content, done.content
    await asyncio.sleep(1.0)
    assert (await cluster.ask(c1, "!hello")).content == "Howdy, alice!"

    # A global switch: the other process stops offering /hello in its server, and
    # stops answering !hello there.
    assert "hello" in names(cluster.server, cluster.guilds[1])
    done = await cluster.ask(c0, "!plugins global disable hello", author=owner)
    assert "disabled" in done.content, done.content
    switched = time.monotonic()
    while "hello" in names(cluster.server, cluster.guilds[1]):
        assert time.monotonic() - switched < 1.0, "shard 1's slash commands were not re-synced"
        await asyncio.sleep(0.02)
    await cluster.silent(c1, "!hello")
    done = await cluster.ask(c1, "!plugins global enable hello", author=owner)  # from B now
    assert "enabled" in done.content, done.content
    await asyncio.sleep(1.0)
    assert "hello" in names(cluster.server, cluster.guilds[0])
    assert (await cluster.ask(c0, "!hello")).content == "Howdy, alice!"
    await cluster.stop()


async def test_history_survives_restarting_both_processes(make_cluster, postgres_url):
    import asyncpg

    cluster = await make_cluster()
    await cluster.start()
    c0, c1 = cluster.channels
    before = {}
    for channel, name in ((c0, "A"), (c1, "B")):
        reply = await cluster.ask(channel, "robot remember this")
        assert reply.content.startswith(f"{name}: seen ")
        before[channel.id] = int(reply.content.rsplit(" ", 1)[1])
    await cluster.stop()

    await cluster.start()
    for channel, name in ((c0, "A"), (c1, "B")):
        reply = await cluster.ask(channel, "robot and now?")
        # The first exchange (question and answer) is in the prompt.
        assert reply.content == f"{name}: seen {before[channel.id] + 2}", reply.content
    await cluster.stop()

    conn = await asyncpg.connect(postgres_url)
    try:
        rows = await conn.fetch(
            "SELECT channel_id, role, content FROM history ORDER BY channel_id, id"
        )
    finally:
        await conn.close()
    by_channel: dict[int, list[tuple[str, str]]] = {}
    for row in rows:
        by_channel.setdefault(row["channel_id"], []).append((row["role"], row["content"]))
    assert by_channel[c0.id][0] == ("user", "robot remember this")
    assert [role for role, _ in by_channel[c0.id]] == ["user", "assistant"] * 2
    assert [role for role, _ in by_channel[c1.id]] == ["user", "assistant"] * 2
    assert by_channel[c1.id][1][1].startswith("B: seen ")


async def test_processes_started_together_take_turns_to_identify(make_cluster):
    # One identify bucket: Discord refuses a second IDENTIFY within 5 s of the first,
    # so the two processes must take turns through the shared identify lock.
    cluster = await make_cluster(max_concurrency=1)
    await cluster.start()
    assert cluster.server.refused_identifies == [], cluster.server.identifies
    first, second = cluster.server.identifies
    assert {first.shard, second.shard} == {(0, 2), (1, 2)}
    assert second.at - first.at >= 5.0
    for process in cluster.processes:
        assert process.lines("Discord allows 1 IDENTIFY at a time")
    await cluster.stop()


TWITCH_TESTS = Path(__file__).resolve().parents[3] / "plugins" / "twitch" / "tests"
# hark.store.locks logs this when a process starts leading ("no longer leading ..." when not).
LEADS = "leading twitch (process "


async def test_killing_the_twitch_leader_hands_leadership_to_the_other(make_cluster):
    pytest.importorskip("hark_twitch")
    sys.path.insert(0, str(TWITCH_TESTS))  # the plugin's loopback Twitch
    try:
        from fake_twitch import FakeTwitch
    finally:
        sys.path.remove(str(TWITCH_TESTS))

    async with FakeTwitch() as twitch:
        twitch.add_user("streamer", "Streamer")
        twitch.add_token("twitch-user-token-e2e", "streamer")
        cluster = await make_cluster(plugins="named_llm,twitch")
        cluster.env.update(twitch.env("twitch-user-token-e2e", "streamer"))
        await cluster.start()
        waiters = [
            asyncio.create_task(p.wait_for_line(LEADS, timeout=30)) for p in cluster.processes
        ]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
        leads = [p for p in cluster.processes if p.lines(LEADS)]
        assert len(leads) == 1, [p.lines("twitch") for p in cluster.processes]
        leader = leads[0]
        other = next(p for p in cluster.processes if p is not leader)
        await twitch.wait_for(lambda: bool(twitch.active()), timeout=15)  # subscribed
        assert len(twitch.live_sessions()) == 1

        old = {s.id for s in twitch.live_sessions()}
        await leader.kill()  # kill -9: its database connection, and so the lock, go with it
        killed = time.monotonic()
        await other.wait_for_line(LEADS, timeout=20)
        # The lock is free at once; the other process tries again every 5 s.
        assert time.monotonic() - killed < 5.0 + 3.0
        # The dead leader's EventSub session is gone and the new leader has its own.
        await twitch.wait_for(
            lambda: (
                {s.id for s in twitch.live_sessions()} - old
                and not old & {s.id for s in twitch.live_sessions()}
            ),
            timeout=15,
        )
        assert len(twitch.live_sessions()) == 1
        await twitch.wait_for(lambda: bool(twitch.active()), timeout=15)
        assert other.running
        assert await other.stop() == 0, other.output[-3000:]
