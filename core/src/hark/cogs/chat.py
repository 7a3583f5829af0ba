"""Chat: the bot answers in text channels through the server's generator.

Triggers (see :mod:`hark.chat.triggers`): a mention, a reply to the bot, a DM
(``CHAT_ANSWER_DMS``), or a callsign from ``BOT_TRIGGER_NAMES``. Commands are
never answered as chat: a message that is a valid command is left to it.

A turn brings along what the message carries (:mod:`hark.chat.attachments`:
images, text files, notes on other files) and the reply chain it belongs to
(:mod:`hark.chat.replychain`), within the server's ``!config chat`` limits. A thread
is a conversation of its own (history is kept by channel id, and a thread's id is
its own); with ``thread_after_chars`` a long answer continues in a new thread
(:mod:`hark.chat.overflow`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from hark.chat import replychain
from hark.chat.attachments import (
    AttachmentReader,
    Collected,
    HttpFetcher,
    Limits,
    embeddable_links,
)
from hark.chat.history import HistoryContext
from hark.chat.overflow import ThreadOverflowTarget, thread_name
from hark.chat.ratelimit import RateLimiter, parse_rate
from hark.chat.settings import ChatSettings
from hark.chat.streaming import ChannelTarget, InteractionTarget, ReplyTarget, TypingIndicator
from hark.chat.triggers import TriggerPolicy, clean_text
from hark.cog import PluginCog, permission_names, require_manager
from hark.providers import Capability, ContextRequest, Generator
from hark.providers.errors import ProviderError
from hark.settings import SettingError

log = logging.getLogger(__name__)


# discord.py itself warns ("Can't keep up") above 10 s; nothing that slow is a reading.
_MAX_GATEWAY_LATENCY = 10.0

#: How many of the bot's recent message ids are remembered (to spot replies to it).
OWN_IDS_KEPT = 512

#: Seconds a message with links waits for the embeds Discord adds to it shortly after
#: it was posted (a MESSAGE_UPDATE), so linked images can be seen.
EMBED_WAIT = 1.5


def sane_gateway_latency(latency: float, interval: float | None) -> float | None:
    """discord.py's heartbeat latency (seconds) if it can be believed, else None.

    ``Client.latency`` is ``KeepAliveHandler.latency``: the HEARTBEAT_ACK's arrival
    minus ``_last_send``. It is ``inf`` until the first ACK. Worse, the keep-alive
    thread hands each heartbeat to the event loop and records ``_last_send`` only
    after it wakes up from waiting on that send; a fast server's ACK is often handled
    by the loop before that, so the ACK is timed from the *previous* heartbeat and
    the "latency" is one whole heartbeat interval (30003 ms against a server
    answering in under 1 ms, with discord.py warning "Can't keep up ... 30.0s
    behind"). So a reading must be finite, positive and well below both the
    interval (``interval`` seconds, when known) and 10 s.
    """
    if not math.isfinite(latency) or latency <= 0:
        return None
    limit = _MAX_GATEWAY_LATENCY
    if interval and interval > 0:
        limit = min(limit, interval / 2)
    return latency if latency < limit else None


def _display_name(user: discord.abc.User) -> str:
    return getattr(user, "display_name", None) or user.name


def _carries_something(message: discord.Message) -> bool:
    return bool(message.attachments or message.embeds or message.stickers)


def _names_of(message: discord.Message) -> str:
    """What stands for a message without words (history keeps it): its files' names."""
    names = [f"[{a.filename}]" for a in message.attachments]
    names += [f"[sticker {s.name}]" for s in message.stickers]
    return " ".join(names) or "[an embed]"


@dataclass(frozen=True, slots=True)
class _Carrier:
    """Files that came without a message (``/ask``'s option), read like a message's."""

    attachments: list[discord.Attachment]
    embeds: tuple[()] = ()


def _can_hold_threads(channel: Any) -> bool:
    """A text or announcement channel where the bot may start a thread from its
    message and post in it (checked first, so that without the permission the
    answer is posted exactly as without the option)."""
    if not isinstance(channel, discord.TextChannel):
        return False
    perms = channel.permissions_for(channel.guild.me)
    return (
        perms.create_public_threads
        and perms.send_messages_in_threads
        and perms.read_message_history
    )


def _thread_starter(message: discord.Message) -> tuple[int, int] | None:
    """(channel id, message id) of the message a thread grew from, to bring into its
    conversation: for a thread started from a message, that message in the parent
    channel; for a forum post, its first message. None outside threads."""
    channel = message.channel
    if not isinstance(channel, discord.Thread) or message.id == channel.id:
        return None
    parent = channel.parent
    if isinstance(parent, discord.ForumChannel):
        return channel.id, channel.id
    return channel.parent_id, channel.id


class ChatCog(PluginCog, name="Chat"):
    """Talk to the bot."""

    def __init__(self, bot) -> None:
        super().__init__(bot)
        config = bot.config
        self.triggers = TriggerPolicy(config.trigger_names, answer_dms=config.answer_dms)
        rate = parse_rate(config.rate_limit)
        self.limiter = RateLimiter(*rate) if rate else None
        # Ids of the bot's recent messages, to spot replies to it when Discord
        # does not include the referenced message.
        self._own_ids: deque[int] = deque()
        self._own_set: set[int] = set()  # the same ids, to look up
        # Messages a reply chain pointed at that are gone or hidden.
        self._missing: deque[int] = deque(maxlen=512)
        # Downloads of embed images (attachments go through discord.py).
        http = getattr(bot, "http", None)
        self.fetcher = HttpFetcher(
            proxy=getattr(http, "proxy", None), proxy_auth=getattr(http, "proxy_auth", None)
        )

    async def cog_load(self) -> None:
        self.bot.chat = self  # hark.bot.ChatService: voice listens for the same callsigns

    async def cog_unload(self) -> None:
        if self.bot.chat is self:
            self.bot.chat = None
        await self.fetcher.close()

    # -- the trigger path --------------------------------------------------

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        me = self.bot.user
        if me is None:
            return
        if message.author.id == me.id:
            self._own_ids.append(message.id)
            self._own_set.add(message.id)
            if len(self._own_ids) > OWN_IDS_KEPT:
                self._own_set.discard(self._own_ids.popleft())
            return
        trigger = self.triggers.match(message, me, own_message_ids=self._own_set)
        # A message with only an attachment (an image and a mention) is answered too.
        if trigger is None or not (trigger.text or _carries_something(message)):
            return
        ctx = await self.bot.get_context(message)
        if ctx.valid:
            return  # a command; the command system answers it, exactly once
        if not await self._allowed(message.author.id, message.channel, message):
            return
        await self._answer_message(message, trigger.text, use_history=True)

    async def _answer_message(
        self, message: discord.Message, text: str, *, use_history: bool
    ) -> None:
        """Answer ``message`` (a trigger or ``!ask``) with what it carries and replies to."""
        settings = self.chat_settings(message.guild, message.channel)
        request = self._request(
            message.author,
            message.channel,
            text or _names_of(message),
            kind="text",
            use_history=use_history,
        )
        # Downloads and the model may take a moment: the bot is shown typing if the
        # answer has not started within TYPING_DELAY (one indicator for the whole turn;
        # a quick answer needs none, and Discord is spared the request).
        indicator = TypingIndicator(message.channel).start()
        try:
            await self._add_context(request, message, settings)
            target: ReplyTarget = ChannelTarget(message.channel, message)
            if settings.thread_after_chars > 0 and _can_hold_threads(message.channel):
                target = ThreadOverflowTarget(
                    message.channel,
                    message,
                    after_chars=settings.thread_after_chars,
                    name=thread_name(text, fallback=f"Answer for {_display_name(message.author)}"),
                )
            await self.answer(request, target, typing=indicator)
        finally:
            indicator.stop()

    def chat_settings(self, guild: Any, channel: Any) -> ChatSettings:
        """The server's ``!config chat`` values for ``channel`` (a thread: its parent's)."""
        runtime = getattr(self.bot, "runtime", None)
        settings = getattr(runtime, "settings", None)
        if settings is None or settings.model("chat") is None:
            return ChatSettings()
        where = getattr(channel, "parent_id", None) or getattr(channel, "id", None)
        values = settings.resolve(
            "chat", guild_id=guild.id if guild else None, channel_id=where
        ).values
        return values if isinstance(values, ChatSettings) else ChatSettings()

    # -- what a message brings along -------------------------------------------

    async def _add_context(
        self, request: ContextRequest, message: discord.Message, settings: ChatSettings
    ) -> None:
        """Fill the request's images, attachments and reply chain from ``message``.
        Never fails the turn: what cannot be read becomes a note, or is left out."""
        try:
            if self._embeds_due(message, settings):
                chain, _ = await asyncio.gather(
                    self._chain(message, settings), self._await_embeds(message)
                )
            else:  # the usual case: nothing to wait for, so no task for it
                chain = await self._chain(message, settings)
            history = await self._history_window(request) if chain else []
            me = self.bot.user
            bot_id = me.id if me else None
            links = [
                replychain.Link(m, clean_text(m, me) if me else m.content)
                for m in chain
                if not replychain.in_history(
                    m, clean_text(m, me) if me else m.content, history, bot_id=bot_id
                )
            ]
            links = replychain.within_budget(links, settings.reply_chain_tokens)
            collected = await self._add_files(
                request, message, settings, also=[link.message for link in links]
            )
        except Exception:
            log.exception("could not read what message %s carries", message.id)
            return
        for link, found in zip(links, collected[1:], strict=True):
            link.images, link.attachments = found.images, found.text
        request.reply_chain = replychain.to_prompt(
            replychain.within_budget(links, settings.reply_chain_tokens),
            bot_id=bot_id,
            name_of=_display_name,
        )

    async def _add_files(
        self,
        request: ContextRequest,
        carrier: Any,
        settings: ChatSettings,
        *,
        also: Sequence[Any] = (),
    ) -> list[Collected]:
        """Read ``carrier``'s attachments (and embed images) into ``request``, and those
        of ``also`` within the same budget; returns what each of them held."""
        reader = AttachmentReader(Limits.from_settings(settings), self.fetcher)
        collected = await reader.read([carrier, *also])
        request.images = tuple(collected[0].images)
        request.attachments = collected[0].text
        return collected

    async def _chain(self, message: discord.Message, settings: ChatSettings) -> list[Any]:
        depth = settings.reply_chain_depth
        if depth <= 0 or settings.reply_chain_tokens <= 0:
            return []
        return await replychain.follow(message, depth, self._lookup, root=_thread_starter(message))

    async def _lookup(self, channel_id: int, message_id: int) -> discord.Message | None:
        """A message of the chain: from discord.py's cache, else one REST fetch."""
        cached = discord.utils.get(self.bot.cached_messages, id=message_id)
        if cached is not None:
            return cached
        if message_id in self._missing:
            return None
        channel = self.bot.get_channel(channel_id) or self.bot.get_partial_messageable(channel_id)
        fetch = getattr(channel, "fetch_message", None)
        if fetch is None:
            return None
        try:
            return await fetch(message_id)
        except (discord.NotFound, discord.Forbidden):
            # Deleted, or not for the bot's eyes: the chain ends there. Remembered, so
            # a thread started without a message is not asked about on every turn.
            self._missing.append(message_id)
            return None

    async def _history_window(self, request: ContextRequest) -> list[Any]:
        """The channel's history entries the prompt will show (to leave them out of the
        reply chain); none when history is not used here."""
        if not request.use_history or request.channel_id is None:
            return []
        for provider in self.bot.control.context_providers(request.guild_id):
            if isinstance(provider, HistoryContext):
                depth = provider.depth_for(request.guild_id)
                if depth <= 0:
                    return []
                with contextlib.suppress(Exception):
                    return await provider.store.recent(request.channel_id, depth)
        return []

    @staticmethod
    def _embeds_due(message: discord.Message, settings: ChatSettings) -> bool:
        """Discord adds link embeds shortly after a message is posted: worth waiting
        for when the message has links and none yet, if images may be shown."""
        if message.embeds or settings.max_images <= 0:
            return False
        return not message.flags.suppress_embeds and bool(embeddable_links(message.content))

    async def _await_embeds(self, message: discord.Message) -> None:
        """Wait a moment (EMBED_WAIT) for the embeds Discord adds to ``message``."""
        with contextlib.suppress(TimeoutError):
            await self.bot.wait_for(
                "message_edit",
                check=lambda _, after: after.id == message.id and bool(after.embeds),
                timeout=EMBED_WAIT,
            )
        # discord.py updated the cached message in place; ``message`` is that object,
        # unless it had left the cache: then take the embeds from the edit's copy.
        if not message.embeds:
            cached = discord.utils.get(self.bot.cached_messages, id=message.id)
            if cached is not None and cached is not message and cached.embeds:
                message.embeds = cached.embeds

    async def _allowed(self, user_id: int, channel: Any, reference: discord.Message | None) -> bool:
        if self.limiter is None:
            return True
        verdict = self.limiter.check(user_id)
        if not verdict.allowed and verdict.notify:
            with contextlib.suppress(discord.HTTPException):
                await ChannelTarget(channel, reference).send(
                    f"You're sending messages faster than I can think. Try again in "
                    f"{max(1, round(verdict.retry_after))}s.",
                    first=True,
                )
        return verdict.allowed

    def _request(
        self,
        author: discord.abc.User,
        channel: Any,
        text: str,
        *,
        kind: str,
        use_history: bool = True,
    ) -> ContextRequest:
        guild = getattr(channel, "guild", None)
        me = guild.me if guild is not None else self.bot.user
        return ContextRequest(
            text=text,
            guild_id=guild.id if guild else None,
            # A thread's own id: its history is its own.
            channel_id=channel.id,
            user_id=author.id,
            user_name=_display_name(author),
            bot_name=_display_name(me) if me else None,
            kind=kind,
            use_history=use_history,
            permissions=permission_names(author, channel),
        )

    async def answer(
        self, request: ContextRequest, target: ReplyTarget, *, typing: Any = None
    ) -> str | None:
        """Run one turn and stream it to ``target``. Returns the delivered text, or None."""
        return await self.bot.reply(request, target, typing=typing)

    # -- commands ------------------------------------------------------------

    @commands.command()
    async def ask(self, ctx: commands.Context[Any], *, question: str) -> None:
        """Ask a one-off question (the channel's history is not used or kept)."""
        if not await self._allowed(ctx.author.id, ctx.channel, ctx.message):
            return
        # In a thread, ctx.channel is the thread: the answer goes there.
        await self._answer_message(ctx.message, question, use_history=False)

    @app_commands.command(name="ask", description="Ask the bot a one-off question")
    @app_commands.describe(question="Your question", file="An image or text file to ask about")
    async def slash_ask(
        self,
        interaction: discord.Interaction,
        question: str,
        file: discord.Attachment | None = None,
    ) -> None:
        if self.limiter is not None:
            verdict = self.limiter.check(interaction.user.id)
            if not verdict.allowed:
                await interaction.response.send_message(
                    f"You're sending messages faster than I can think. Try again in "
                    f"{max(1, round(verdict.retry_after))}s.",
                    ephemeral=True,
                )
                return
        await interaction.response.defer(thinking=True)
        request = self._request(
            interaction.user, interaction.channel, question, kind="text", use_history=False
        )
        if file is not None:
            settings = self.chat_settings(interaction.guild, interaction.channel)
            await self._add_files(request, _Carrier([file]), settings)
        await self.answer(request, InteractionTarget(interaction))

    @commands.command()
    async def ping(self, ctx: commands.Context[Any]) -> None:
        """Check the bot is alive: the time to post a reply, and the gateway heartbeat."""
        started = time.perf_counter()
        message = await ctx.reply("Pong!", mention_author=False)
        rest = time.perf_counter() - started
        # The connection this server's events come on (its shard's, when sharded).
        guild_id = ctx.guild.id if ctx.guild else None
        ws = self.bot.gateway_socket(guild_id)
        keep_alive = getattr(ws, "_keep_alive", None)  # None before HELLO
        latency = ws.latency if ws is not None else float("nan")
        gateway = sane_gateway_latency(latency, getattr(keep_alive, "interval", None))
        heartbeat = f"{gateway * 1000:.0f} ms" if gateway is not None else "no reliable reading"
        shard = self.bot.shard_for(guild_id)
        where = "" if shard is None else f" (shard {shard} of {self.bot.shard_count})"
        await message.edit(
            content=f"Pong! REST round trip: {rest * 1000:.0f} ms (posting this reply); "
            f"gateway heartbeat: {heartbeat}{where}."
        )

    @commands.command()
    async def model(self, ctx: commands.Context[Any], *, name: str | None = None) -> None:
        """Show or set (Manage Server) the model of this server's generator."""
        guild_id = ctx.guild.id if ctx.guild else None
        generator = self.bot.control.provider_for(Capability.GENERATE, guild_id)
        if not isinstance(generator, Generator):
            await ctx.reply("No LLM is enabled here.", mention_author=False)
            return
        if name is None:
            current = generator.model_for(guild_id) or "the provider's default"
            await ctx.reply(f"`{generator.id}` uses model `{current}` here.", mention_author=False)
            return
        await require_manager(ctx)
        name = name.strip()
        note = ""
        if generator.supports_model_listing:
            try:
                models = await generator.list_models()
            except ProviderError as exc:
                note = f" (couldn't check it: {exc.message})"
            else:
                matched = generator.match_model(name, models)
                if matched is None:
                    shown = ", ".join(f"`{m}`" for m in models[:20]) or "none"
                    await ctx.reply(
                        f"`{generator.id}` has no model `{name}`. Available: {shown}.",
                        mention_author=False,
                    )
                    return
                name = matched
        try:
            await generator.set_model(ctx.guild.id, name)
        except SettingError as exc:  # the plugin's declared `model` refuses it
            await ctx.reply(f"Nothing changed: {exc}", mention_author=False)
            return
        await ctx.reply(
            f"`{generator.id}` now uses model `{name}` here.{note}", mention_author=False
        )
