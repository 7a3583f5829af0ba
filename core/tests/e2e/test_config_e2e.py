"""`!config` and `/config` end to end, with a declared plugin: the real bot and discord.py
against the loopback Discord server. Every layer of the precedence, who may set what,
reset words, readable refusals, autocomplete, and secrets that are never shown."""

from __future__ import annotations

import logging
from typing import Any, Literal

import pytest
from discord.ext import commands

import hark
from hark import PluginCog
from hark.testing.harness import BotHarness

SECRET_VALUE = "sk-demo-5c0ffee0d15ea5e0badc0de0f00dcafe"


class DemoSettings(hark.Settings):
    greeting: str = hark.setting("Hello", description="what `!greet` says", max_length=40)
    excited: bool = hark.setting(False, description="end with an exclamation mark")
    volume: float = hark.setting(1.0, ge=0.5, le=2.0, env="DEMO_VOLUME", description="loudness")
    mood: Literal["calm", "cheery", "grumpy"] = hark.setting(
        "calm", scopes=("global", "server", "channel", "user"), description="how it sounds"
    )
    words: list[str] = hark.setting([], description="extra words", scopes=("global", "server"))


class DemoCog(PluginCog, name="Demo"):
    @commands.command()
    async def greet(self, ctx: commands.Context[Any]) -> None:
        resolved = self.host.settings(
            self.plugin_id,
            guild_id=ctx.guild.id if ctx.guild else None,
            channel_id=ctx.channel.id,
            user_id=ctx.author.id,
        )
        s = resolved.values
        end = "!" if s.excited else "."
        await ctx.send(f"{s.greeting}{end} mood={s.mood} volume={s.volume} words={s.words}")


demo = hark.Plugin(
    description="Demo plugin with settings",
    settings=DemoSettings,
    secrets=[hark.Secret("DEMO_API_KEY", "the demo service's key")],
    cogs=[DemoCog],
)


@pytest.fixture
def env(monkeypatch):
    monkeypatch.delenv("DEMO_API_KEY", raising=False)
    monkeypatch.setenv("DEMO_VOLUME", "1.5")
    return monkeypatch


@pytest.fixture
async def harness(env, hark_harness_factory) -> BotHarness:
    return await hark_harness_factory(
        plugins={"demo": demo},
        config={"plugin_settings": {"demo": {"greeting": "Hi there", "words": "a, b"}}},
    )


async def greet(h: BotHarness, **kwargs: Any) -> str:
    return (await h.ask("!greet", **kwargs)).content


async def test_every_layer_and_its_origin(harness: BotHarness) -> None:
    h, owner = harness, harness.server.owner
    # default, bot.toml (a comma list read as a list), environment
    assert await greet(h) == "Hi there. mood=calm volume=1.5 words=['a', 'b']"
    text = (await h.ask("!config demo")).content
    assert "`greeting` = `Hi there` (bot.toml)" in text
    assert "`excited` = `off` (default)" in text
    assert "`volume` = `1.5` (env DEMO_VOLUME)" in text
    assert "`words` = `a, b` (bot.toml)" in text

    # The owner's bot-wide value beats the environment...
    reply = await h.ask("!config demo volume 0.75 --global", author=owner)
    assert reply.content == "`demo.volume` is now `0.75` bot-wide."
    # ...the server's beats the owner's, the channel's the server's, a member's own all.
    await h.ask("!config demo mood cheery --global", author=owner)
    await h.ask("!config demo mood GRUMPY", author=h.admin)
    assert "mood=grumpy" in await greet(h)
    reply = await h.ask("!config demo mood calm --channel", author=h.admin)
    assert reply.content == "`demo.mood` is now `calm` in this channel."
    reply = await h.ask("!config demo mood cheery --me")  # any member, for themselves
    assert reply.content == "`demo.mood` is now `cheery` for you."
    assert await greet(h) == "Hi there. mood=cheery volume=0.75 words=['a', 'b']"
    assert "mood=calm" in await greet(h, author=h.admin)
    text = (await h.ask("!config demo", author=h.admin)).content
    assert "`mood` = `calm` (this channel)" in text
    assert "`volume` = `0.75` (bot-wide (owner))" in text
    text = (await h.ask("!config demo mood")).content
    assert "`demo.mood` = `cheery` (your own)" in text
    assert "one of `calm`, `cheery`, `grumpy`" in text

    # A value set below one that wins says so.
    reply = await h.ask("!config demo mood grumpy", author=h.admin)
    assert "Here it is still `calm` (this channel), which comes first." in reply.content

    # Reset words (any of them) fall back one layer at a time.
    await h.ask("!config demo mood unset --channel", author=h.admin)
    assert "mood=grumpy" in await greet(h, author=h.admin)
    reply = await h.ask("!config demo mood reset", author=h.admin)
    assert "is back to `cheery` (bot-wide (owner))" in reply.content
    reply = await h.ask("!config demo volume clear --global", author=owner)
    assert reply.content == "`demo.volume` is back to `1.5` (env DEMO_VOLUME) bot-wide."
    reply = await h.ask("!config demo volume reset --global", author=owner)
    assert "had no value of its own bot-wide; it is `1.5` (env DEMO_VOLUME)" in reply.content

    # Values survive a restart.
    await h.ask("!config demo excited yes", author=h.admin)
    await h.restart()
    assert await greet(h, author=h.admin) == "Hi there! mood=cheery volume=1.5 words=['a', 'b']"


async def test_who_may_set_what(harness: BotHarness) -> None:
    h, owner = harness, harness.server.owner
    reply = await h.ask("!config demo greeting Howdy")
    assert reply.content == "You need the Manage Server permission to do that."
    reply = await h.ask("!config demo greeting Howdy --channel")
    assert "Manage Server" in reply.content
    reply = await h.ask("!config demo greeting Howdy --global", author=h.admin)
    assert reply.content == "Only the bot's owner can do that."
    reply = await h.ask("!config demo greeting Howdy --me")
    assert reply.content == (
        "`demo.greeting` can't be set for you; it can be set bot-wide (owner),"
        " per server, per channel."
    )
    reply = await h.ask("!config demo words x --channel", author=h.admin)
    assert "can't be set in this channel" in reply.content
    assert await greet(h) == "Hi there. mood=calm volume=1.5 words=['a', 'b']"
    # The bot's owner may set a server's values too.
    reply = await h.ask('!config demo greeting "Good day"', author=owner)
    assert reply.content == "`demo.greeting` is now `Good day` in this server."


async def test_refusals_are_one_clear_line(harness: BotHarness) -> None:
    h = harness
    cases = {
        "volume 3": "Nothing changed: `volume` must be a number between 0.5 and 2.0.",
        "volume loud": "Nothing changed: `volume` must be a number between 0.5 and 2.0.",
        "excited maybe": "Nothing changed: `excited` must be on or off.",
        "mood sad": "Nothing changed: `mood` must be one of `calm`, `cheery`, `grumpy`.",
        "greeting " + "x" * 41: (
            "Nothing changed: `greeting` must be text of at most 40 characters."
        ),
        "colour red": "`demo`: there is no setting `colour` (settings: `greeting`, `excited`,"
        " `volume`, `mood`, `words`).",
    }
    for args, expected in cases.items():
        reply = await h.ask(f"!config demo {args}", author=h.admin)
        assert reply.content == expected, args
    reply = await h.ask("!config nope")
    assert (
        reply.content
        == "No plugin called `nope` has settings. Plugins with settings: `chat`, `demo`."
    )
    assert await greet(h) == "Hi there. mood=calm volume=1.5 words=['a', 'b']"


async def test_secrets_are_never_shown(env, hark_harness_factory) -> None:
    h = await hark_harness_factory(plugins={"demo": demo})
    assert "`demo` (needs DEMO_API_KEY)" in (await h.ask("!config")).content
    assert "— needs `DEMO_API_KEY`" in (await h.ask("!plugins")).content
    assert "secret `DEMO_API_KEY`: not set (required)" in (await h.ask("!config demo")).content
    await h.close()

    env.setenv("DEMO_API_KEY", SECRET_VALUE)
    h = await hark_harness_factory(plugins={"demo": demo})
    listing = (await h.ask("!plugins")).content
    index = (await h.ask("!config")).content
    shown = (await h.ask("!config demo")).content
    assert "needs" not in listing and "needs" not in index
    assert "secret `DEMO_API_KEY`: set" in shown
    inter = await h.server.invoke_slash(h.guild, h.channel, h.member, "config", {"plugin": "demo"})
    slash = (await inter.wait_response()).content
    for text in (listing, index, shown, slash):
        assert SECRET_VALUE not in text and SECRET_VALUE[:12] not in text
    info = h.bot.runtime.manager.get("demo")
    assert info.as_dict()["secrets"] == [{"env": "DEMO_API_KEY", "required": True, "set": True}]
    assert SECRET_VALUE not in repr(info.as_dict())


async def test_slash_config_and_autocomplete(harness: BotHarness) -> None:
    h, server = harness, harness.server
    guild, channel = h.guild, h.channel

    async def slash(member, **options):
        inter = await server.invoke_slash(guild, channel, member, "config", options)
        return await inter.wait_response()

    listing = await slash(h.member)
    assert "`demo`" in listing.content and "greeting, excited" in listing.content
    refused = await slash(h.member, plugin="demo", key="excited", value="on")
    assert refused.ephemeral and "Manage Server" in refused.content
    done = await slash(h.admin, plugin="demo", key="excited", value="on")
    assert done.content == "`demo.excited` is now `on` in this server."
    done = await slash(h.member, plugin="demo", key="mood", value="grumpy", scope="user")
    assert done.content == "`demo.mood` is now `grumpy` for you." and done.ephemeral
    refused = await slash(h.admin, plugin="demo", key="volume", value="2", scope="global")
    assert refused.content == "Only the bot's owner can do that." and refused.ephemeral
    bad = await slash(h.admin, plugin="demo", key="volume", value="9")
    assert bad.content == "Nothing changed: `volume` must be a number between 0.5 and 2.0."
    assert await greet(h) == "Hi there! mood=grumpy volume=1.5 words=['a', 'b']"
    back = await slash(h.admin, plugin="demo", key="excited", value="reset")
    assert back.content == "`demo.excited` is back to `off` (default) in this server."

    async def complete(focused: str, **options):
        choices = await server.invoke_autocomplete(
            guild, channel, h.member, "config", options, focused
        )
        return [c["value"] for c in choices]

    assert await complete("plugin", plugin="de") == ["demo"]
    assert await complete("key", plugin="demo", key="e") == ["excited", "greeting", "volume"]
    assert await complete("value", plugin="demo", key="mood", value="") == [
        "calm",
        "cheery",
        "grumpy",
        "reset",
    ]
    assert await complete("value", plugin="demo", key="excited", value="o") == ["on", "off"]
    assert await complete("value", plugin="nope", key="mood", value="") == []


async def test_bad_start_up_values_are_one_line_each_and_ignored(
    env, hark_harness_factory, caplog
) -> None:
    env.setenv("DEMO_VOLUME", "loud")
    table = {"demo": {"greeting": "x" * 99, "colour": "red"}}
    with caplog.at_level(logging.WARNING, logger="hark.settings"):
        h = await hark_harness_factory(plugins={"demo": demo}, config={"plugin_settings": table})
        assert await greet(h) == "Hello. mood=calm volume=1.0 words=[]"
        await greet(h)
    lines = [r.getMessage() for r in caplog.records if r.name == "hark.settings"]
    assert lines == [
        "demo: ignoring bot.toml [plugin.demo] colour: there is no such setting"
        " (settings: greeting, excited, volume, mood, words)",
        "demo: ignoring bot.toml [plugin.demo] greeting = '" + "x" * 78 + "…: `greeting`"
        " must be text of at most 40 characters",
        "demo: ignoring DEMO_VOLUME='loud': `volume` must be a number between 0.5 and 2.0",
    ]


class ToneSettings(hark.Settings):
    tone: str = hark.setting("plain", description="how replies sound")


class ToneGenerator(hark.Generator):
    """Answers with the tone its call was given: what reached the provider."""

    async def _impl(self, request: hark.GenerationRequest):
        yield f"tone={request.settings.tone} channel={request.channel_id}"


async def test_a_channels_value_reaches_the_provider_of_a_reply_there(hark_harness_factory):
    tone = hark.Plugin(description="Tones", settings=ToneSettings, providers=[ToneGenerator])
    h = await hark_harness_factory(plugins={"tone": tone})
    other = h.server.create_text_channel(h.guild, "other")
    done = await h.ask("!config tone tone gruff --channel", author=h.admin)
    assert "gruff" in done.content
    here = await h.ask("!ask hi")
    assert here.content == f"tone=gruff channel={h.channel.id}"
    there = await h.ask("!ask hi", channel=other)
    assert there.content == f"tone=plain channel={other.id}"


async def test_a_registered_secret_inside_a_value_is_never_shown(hark_harness_factory):
    hark.register_secret("hunter2-url-password")
    tone = hark.Plugin(description="Tones", settings=ToneSettings, providers=[ToneGenerator])
    h = await hark_harness_factory(plugins={"tone": tone})
    done = await h.ask("!config tone tone http://me:hunter2-url-password@host/", author=h.admin)
    shown = await h.ask("!config tone")
    for text in (done.content, shown.content):
        assert "hunter2-url-password" not in text and "http://me:" in text
