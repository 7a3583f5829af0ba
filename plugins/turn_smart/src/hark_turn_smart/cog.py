"""``!smartturn``: this server's Smart Turn settings, and changing them.

Anyone may look; ``!smartturn set`` needs Manage Server (or being the bot's owner).
A change applies from the next utterance: each speaker reads the settings again
when they start to speak.
"""

from __future__ import annotations

from typing import Any

from discord.ext import commands

from hark import Capability, PluginCog
from hark.cog import require_manager
from hark_turn_smart.config import DEFAULT_SETTINGS, DESCRIPTIONS, parse
from hark_turn_smart.detector import SmartTurnDetector

_RESET_WORDS = frozenset({"reset", "default", "clear"})


def _show(key: str, value: Any) -> str:
    if value is None:
        return "the voice setting"
    if key.endswith("_ms"):
        return f"{value} ms"
    return f"{value:g}"


class SmartTurnCog(PluginCog, name="SmartTurn"):
    """Smart Turn: when a speaker's turn is over."""

    default_settings = DEFAULT_SETTINGS

    @property
    def detector(self) -> SmartTurnDetector | None:
        return self.provider(SmartTurnDetector)

    def _in_use_line(self, guild_id: int | None) -> str:
        control = getattr(self.bot, "control", None)
        chosen = control.provider_for(Capability.TURN, guild_id) if control else None
        mine = self.detector
        if chosen is not None and chosen is mine:
            return "In use here: yes."
        if chosen is None:
            return "In use here: no (no turn detector is enabled in this server)."
        return (
            f"In use here: no — this server uses `{chosen.id}`; "
            f"`!plugins use turn {mine.id if mine else self.plugin_id}` switches to Smart Turn."
        )

    def _origin(self, key: str, guild_id: int | None) -> str:
        if guild_id is not None and self.settings.guild(guild_id).is_set(key):
            return "set here"
        if self.settings.global_().is_set(key):
            return "global"
        return "default"

    def render(self, guild_id: int | None) -> str:
        lines = ["**Smart Turn** — Silero VAD + Smart Turn v3 (bundled, offline)"]
        detector = self.detector
        if detector is not None:
            reason = detector.unavailable_reason()
            if reason:
                lines.append(f"⚠ Can't be used: {reason}.")
        lines.append(self._in_use_line(guild_id))
        scope = self.settings.guild(guild_id)
        for key in DEFAULT_SETTINGS:
            shown = f"{_show(key, scope.get(key))} ({self._origin(key, guild_id)})"
            lines.append(f"`{key}` = {shown} — {DESCRIPTIONS[key]}")
        if detector is not None and detector.loaded:
            p50 = detector.stats.percentile(50)
            judged = detector.stats.calls
            if p50 is not None:
                lines.append(f"Smart Turn: {judged} pause(s) judged, median {p50 * 1000:.0f} ms.")
            else:
                lines.append("Smart Turn: models loaded, no pause judged yet.")
        return "\n".join(lines)

    @commands.group(name="smartturn", invoke_without_command=True)
    async def smartturn(self, ctx: commands.Context[Any]) -> None:
        """Show this server's Smart Turn settings and whether it is the turn detector here."""
        text = self.render(ctx.guild.id if ctx.guild else None)
        prefix = ctx.clean_prefix
        text += f"\nChange (Manage Server): `{prefix}smartturn set KEY VALUE|reset`."
        await ctx.send(text)

    @smartturn.command(name="set")
    async def set_(self, ctx: commands.Context[Any], key: str, *, value: str) -> None:
        """Set one setting for this server (`reset` for the default) (Manage Server)."""
        await require_manager(ctx)
        assert ctx.guild is not None
        key = key.strip().lower()
        if key not in DEFAULT_SETTINGS:
            await ctx.reply(
                f"There is no setting `{key}`; one of: "
                + ", ".join(f"`{k}`" for k in DEFAULT_SETTINGS)
                + ".",
                mention_author=False,
            )
            return
        scope = self.settings.guild(ctx.guild.id)
        if value.strip().lower() in _RESET_WORDS:
            await scope.clear(key)
            shown = _show(key, scope.get(key))
            await ctx.reply(f"`{key}` is back to {shown} here.", mention_author=False)
            return
        try:
            parsed = parse(key, value)
        except ValueError as exc:
            await ctx.reply(f"{exc}.", mention_author=False)
            return
        await scope.set(key, parsed)
        note = ""
        max_wait, pause = scope.get("max_wait_ms"), scope.get("pause_ms")
        if key in ("pause_ms", "max_wait_ms") and max_wait < pause:
            note = f" (`max_wait_ms` is below `pause_ms`, so incomplete turns end at {pause} ms)"
        await ctx.reply(
            f"`{key}` is now {_show(key, parsed)} here{note}; it applies from the next utterance.",
            mention_author=False,
        )
