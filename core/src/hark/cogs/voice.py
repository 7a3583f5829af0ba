"""`!join`, `!listen`, `!stop`, `!leave` (and their slash forms) and voice settings.

One voice session per server. The text channel where `!join` was used becomes the
session's linked channel: transcripts, spoken replies and notices go there, and
voice turns are kept in its history. The bot leaves by itself when it has been
alone in the voice channel for ``alone_timeout_s``.

Which server had a voice session is remembered (the ``voice_session`` value in the
plugin's settings, not a user setting): at start-up those servers' providers are
warmed, so a `join` after a restart is answered as fast as before it.

The voice stack (discord-ext-voice-recv, DAVE, the session) is imported when a
session starts, not with this module: `bot plugins` and `bot console` list this
Cog without loading it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import discord
from discord.ext import commands

from hark.cog import PluginCog, manage_server
from hark.voice.turns import TurnSettings

if TYPE_CHECKING:
    from hark.voice.session import VoiceSession

# Where a server's voice session is remembered (guild scope; not in VOICE_DEFAULTS, so
# `!voice set` and `!voice` do not show it).
SESSION_KEY = "voice_session"

log = logging.getLogger(__name__)


class _VoiceDefaults:
    """``VoiceCog.default_settings``: the session's ``VOICE_DEFAULTS``, imported when read."""

    def __get__(self, obj: object, owner: type | None = None) -> dict[str, Any]:
        from hark.voice.session import VOICE_DEFAULTS

        return VOICE_DEFAULTS


class VoiceCog(PluginCog, name="Voice"):
    """Talk with the bot in a voice channel."""

    default_settings = _VoiceDefaults()

    def __init__(self, bot) -> None:
        super().__init__(bot)
        self.sessions: dict[int, VoiceSession] = {}
        self._alone: dict[int, asyncio.Task[None]] = {}
        self._leaving: set[int] = set()
        self._warmed_at_start = False
        self._warming: set[asyncio.Task[None]] = set()

    async def cog_load(self) -> None:
        self.bot.voice_sessions = self  # hark.bot.VoiceService: bot.speak() and plugins

    async def cog_unload(self) -> None:
        if self.bot.voice_sessions is self:
            self.bot.voice_sessions = None

    async def on_shutdown(self) -> None:
        for task in self._warming:
            task.cancel()
        for guild_id in list(self.sessions):
            # Remembered: the next start warms this server's providers.
            await self.end(guild_id, forget=False)

    async def end(self, guild_id: int, *, forget: bool = True) -> None:
        session = self.sessions.pop(guild_id, None)
        task = self._alone.pop(guild_id, None)
        if task is not None:
            task.cancel()
        if forget:
            await self._forget_session(guild_id)
        if session is not None:
            self._leaving.add(guild_id)
            try:
                await session.close()
            finally:
                self._leaving.discard(guild_id)

    async def speak(self, guild_id: int, text: str) -> bool:
        session = self.sessions.get(guild_id)
        return await session.say(text) if session is not None else False

    # -- commands --------------------------------------------------------------

    @commands.hybrid_command(name="join", description="Join your voice channel")
    @commands.guild_only()
    async def join(self, ctx: commands.Context[Any]) -> None:
        """Join your voice channel (this text channel becomes the linked one)."""
        state = getattr(ctx.author, "voice", None)
        if state is None or state.channel is None:
            await ctx.reply("Join a voice channel first, then ask me again.", mention_author=False)
            return
        channel = state.channel
        session = self.sessions.get(ctx.guild.id)
        if session is not None and session.vc.channel == channel:
            session.text_channel = ctx.channel
            await ctx.reply(f"I'm already in **{channel.name}**.", mention_author=False)
            return
        await ctx.defer()
        if session is not None:
            await self.end(ctx.guild.id)
        from hark.voice.receive import HarkVoiceClient
        from hark.voice.session import VoiceSession

        try:
            vc = await channel.connect(
                cls=HarkVoiceClient, self_deaf=False, timeout=20, reconnect=True
            )
        except (TimeoutError, discord.ClientException, discord.HTTPException) as exc:
            log.warning("could not join voice in guild %s: %r", ctx.guild.id, exc)
            await ctx.reply(
                f"I couldn't join **{channel.name}**. Check my Connect/Speak permissions.",
                mention_author=False,
            )
            return
        session = self.sessions[ctx.guild.id] = VoiceSession(
            self.bot, vc, ctx.channel, self.settings
        )
        session.start_warm()
        await self.settings.guild(ctx.guild.id).set(
            SESSION_KEY, {"voice_channel_id": channel.id, "text_channel_id": ctx.channel.id}
        )
        await ctx.reply(
            f"Joined **{channel.name}**. Use `{ctx.clean_prefix}listen` and talk to me.",
            mention_author=False,
        )

    def _session(self, ctx: commands.Context[Any]) -> VoiceSession | None:
        return self.sessions.get(ctx.guild.id) if ctx.guild else None

    @commands.hybrid_command(name="listen", description="Start listening in the voice channel")
    @commands.guild_only()
    async def listen(self, ctx: commands.Context[Any]) -> None:
        """Listen continuously and answer (until `stop`)."""
        session = self._session(ctx)
        if session is None:
            await ctx.reply(
                f"I'm not in a voice channel: use `{ctx.clean_prefix}join` first.",
                mention_author=False,
            )
            return
        session.text_channel = ctx.channel
        session.start_warm()
        session.start_listening()
        mode = "everything" if session.setting("answer") == "all" else "messages that say my name"
        await ctx.reply(f"Listening (answering {mode}).", mention_author=False)

    @commands.hybrid_command(name="stop", description="Stop listening and stop talking")
    @commands.guild_only()
    async def stop(self, ctx: commands.Context[Any]) -> None:
        """Stop listening (and stop talking)."""
        session = self._session(ctx)
        if session is None:
            await ctx.reply("I'm not in a voice channel.", mention_author=False)
            return
        session.stop_listening()
        session.interrupt()
        await ctx.reply("Stopped listening.", mention_author=False)

    @commands.hybrid_command(name="leave", description="Leave the voice channel")
    @commands.guild_only()
    async def leave(self, ctx: commands.Context[Any]) -> None:
        """Leave the voice channel."""
        if self._session(ctx) is None:
            await ctx.reply("I'm not in a voice channel.", mention_author=False)
            return
        await self.end(ctx.guild.id)
        await ctx.reply("Left the voice channel.", mention_author=False)

    @commands.group(name="voice", invoke_without_command=True)
    @commands.guild_only()
    async def voice(self, ctx: commands.Context[Any]) -> None:
        """Show this server's voice settings."""
        scope = self.settings.guild(ctx.guild.id)
        lines = [f"`{key}` = `{scope.get(key)}`" for key in self.default_settings]
        session = self.sessions.get(ctx.guild.id)
        if session is None:
            status = "Not in a voice channel."
        else:
            from hark.voice.dave import encryption_of

            encryption = encryption_of(getattr(session.vc, "_connection", None))
            state = "listening" if session.listening else "not listening"
            status = (
                f"In **{session.vc.channel.name}**, {state}. "
                f"End-to-end encryption: {encryption.describe()}."
            )
        await ctx.send(
            f"{status}\n**Voice settings**\n"
            + "\n".join(lines)
            + f"\nChange with `{ctx.clean_prefix}voice set KEY VALUE`."
        )

    @voice.command(name="set")
    @manage_server()
    async def voice_set(self, ctx: commands.Context[Any], key: str, *, value: str) -> None:
        """Change a voice setting (Manage Server)."""
        defaults = self.default_settings
        if key not in defaults:
            await ctx.reply(
                f"Unknown setting `{key}`. Known: {', '.join(defaults)}.",
                mention_author=False,
            )
            return
        try:
            parsed = _parse_like(defaults[key], value, key)
            _check_range(key, parsed, self.settings.guild(ctx.guild.id).all())
        except ValueError as exc:
            await ctx.reply(str(exc), mention_author=False)
            return
        await self.settings.guild(ctx.guild.id).set(key, parsed)
        when = (
            "takes effect for new speakers / the next `listen`"
            if key in TURN_KEYS
            else "takes effect at once"
        )
        await ctx.reply(f"`{key}` is now `{parsed}` ({when}).", mention_author=False)

    # -- events ----------------------------------------------------------------

    @commands.Cog.listener()
    async def on_ready(self) -> None:
        """Warm the providers of servers that had a voice session when the bot stopped."""
        if self._warmed_at_start:
            return  # on_ready comes again after a reconnect
        self._warmed_at_start = True
        from hark.voice.session import warm_guild

        for guild in self.bot.guilds:
            if guild.id in self.sessions or not self.enabled_in(guild.id):
                continue
            if self.settings.guild(guild.id).get(SESSION_KEY, None) is None:
                continue
            log.info("guild %s had a voice session: warming its providers", guild.id)
            task = asyncio.create_task(warm_guild(self.bot.control, guild.id))
            self._warming.add(task)
            task.add_done_callback(self._warming.discard)

    async def _forget_session(self, guild_id: int) -> None:
        scope = self.settings.guild(guild_id)
        if scope.is_set(SESSION_KEY):
            await scope.clear(SESSION_KEY)

    @commands.Cog.listener()
    async def on_hark_plugins_changed(self, guild_id: int | None) -> None:
        """Disabling this plugin in a server ends its voice session there."""
        for gid in [guild_id] if guild_id is not None else list(self.sessions):
            if gid in self.sessions and not self.enabled_in(gid):
                await self.sessions[gid].notice("The voice plugin was disabled here, so I left.")
                await self.end(gid)

    @commands.Cog.listener()
    async def on_voice_state_update(
        self, member: discord.Member, before: discord.VoiceState, after: discord.VoiceState
    ) -> None:
        guild_id = member.guild.id
        session = self.sessions.get(guild_id)
        if session is None:
            return
        if member.id == self.bot.user.id:
            if after.channel is None and guild_id not in self._leaving:
                # Disconnected from outside (kicked, channel deleted, connection lost).
                self.sessions.pop(guild_id, None)
                await self._forget_session(guild_id)
                await session.notice("I was disconnected from the voice channel.")
                with contextlib.suppress(Exception):
                    await session.close()
            return
        self._check_alone(session)

    def _check_alone(self, session: VoiceSession) -> None:
        channel = session.vc.channel
        humans = [m for m in getattr(channel, "members", []) if not m.bot]
        guild_id = session.guild_id
        pending = self._alone.get(guild_id)
        if humans:
            if pending is not None:
                pending.cancel()
                self._alone.pop(guild_id, None)
            return
        if pending is None or pending.done():
            self._alone[guild_id] = asyncio.create_task(self._leave_when_alone(guild_id, session))

    async def _leave_when_alone(self, guild_id: int, session: VoiceSession) -> None:
        await asyncio.sleep(float(session.setting("alone_timeout_s")))
        if self.sessions.get(guild_id) is session:
            self._alone.pop(guild_id, None)
            await session.notice("Everyone left the voice channel, so I left too.")
            await self.end(guild_id)


TURN_KEYS = (
    "aggressiveness",
    "pre_roll_ms",
    "min_speech_ms",
    "pause_ms",
    "silence_ms",
    "max_utterance_ms",
)


def _check_range(key: str, value: Any, current: dict[str, Any]) -> None:
    """Refuse values the turn detector (or the session) cannot work with."""
    if (
        key
        in (
            "barge_in_ms",
            "barge_in_pause_ms",
            "barge_in_onset_rms",
            "barge_in_onset_ms",
            "alone_timeout_s",
            "max_reply_chars",
        )
        and value < 0
    ):
        raise ValueError(f"`{key}` must be 0 or more.")
    if key in ("min_speech_probability", "min_confidence") and not 0 <= value <= 1:
        raise ValueError(f"`{key}` = `{value}` is out of range: it is between 0 and 1.")
    if key in TURN_KEYS:
        merged = {k: current[k] for k in TURN_KEYS} | {key: value}
        try:
            TurnSettings(**merged)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"`{key}` = `{value}` is out of range: {exc}.") from None


def _parse_like(default: Any, value: str, key: str) -> Any:
    text = value.strip()
    if isinstance(default, bool):
        if text.lower() in ("on", "true", "yes", "1"):
            return True
        if text.lower() in ("off", "false", "no", "0"):
            return False
        raise ValueError(f"`{key}` takes on/off.")
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"`{key}` takes a whole number.") from None
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"`{key}` takes a number.") from None
    if key == "answer" and text not in ("all", "callsign"):
        raise ValueError("`answer` is `all` or `callsign`.")
    return text
