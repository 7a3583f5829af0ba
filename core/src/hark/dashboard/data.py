"""What the dashboard shows, as plain data: one function per page (and API route).

Everything comes from the running bot and the core's turn metrics store
(:mod:`hark.metrics`); nothing here changes anything. Values that could carry a
secret (a plugin's load error, an event's message) were redacted when recorded,
and every response is redacted again on the way out (:mod:`hark.dashboard.app`).
"""

from __future__ import annotations

import math
import os
import resource
import sys
import time
from typing import Any

from hark import __version__
from hark.metrics import BARGE_IN_MARKS, STAGE_LABELS, VOICE_STAGES, TurnRecord
from hark.providers import Capability
from hark.tools import toolbox_problems


def rss_bytes() -> int | None:
    """This process's resident memory now (Linux), else its peak."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def _seconds(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value, 4)


def guild_name(bot: Any, guild_id: int | None) -> str | None:
    if guild_id is None:
        return None
    guild = bot.get_guild(guild_id)
    return guild.name if guild is not None else str(guild_id)


def channel_name(bot: Any, channel_id: int | None) -> str | None:
    if channel_id is None:
        return None
    channel = bot.get_channel(channel_id)
    return f"#{channel.name}" if getattr(channel, "name", None) else str(channel_id)


def overview(bot: Any, dashboard: Any) -> dict[str, Any]:
    metrics = bot.metrics
    connected = bool(bot.is_ready() and not bot.is_closed() and bot.gateway_open)
    turns = metrics.turn_counts
    return {
        "version": __version__,
        "connected": connected,
        "user": str(bot.user) if bot.user is not None else None,
        "gateway_latency_s": _seconds(bot.latency) if connected else None,
        # "shards 0-1 of 4" when this process runs some of a sharded bot's shards.
        "shards": bot.shard_label,
        "guilds": [
            {"id": str(g.id), "name": g.name, "members": g.member_count}
            for g in sorted(bot.guilds, key=lambda g: g.name.lower())
        ],
        "uptime_s": round(time.time() - dashboard.started_at, 1),
        "memory_bytes": rss_bytes(),
        "event_loop_lag_s": dashboard.lag.current,
        "event_loop_lag_max_s": dashboard.lag.worst,
        "voice_sessions": len(voice_sessions(bot)),
        "turns": {
            "total": sum(turns.values()),
            "by_outcome": {
                f"{kind}/{outcome}": count for (kind, outcome), count in sorted(turns.items())
            },
            "first_token": metrics.first_token_percentiles(),
        },
        "events": {"total": sum(metrics.event_counts.values()), **dict(metrics.event_counts)},
    }


def plugins(bot: Any) -> dict[str, Any]:
    control = bot.control
    manager = control.manager
    listing = []
    for info in sorted(manager.plugins.values(), key=lambda i: (not i.builtin, i.id)):
        listing.append(
            {
                "id": info.id,
                "version": info.version,
                "status": info.status,
                "error": info.error,
                "builtin": info.builtin,
                "protected": info.protected,
                "provides": info.capabilities if info.loaded else [],
                # Only the variables' names, never a value.
                "needs": info.missing_secrets if info.loaded else [],
                "problems": toolbox_problems(info.tools) if info.loaded else [],
            }
        )
    servers = []
    for guild in sorted(bot.guilds, key=lambda g: g.name.lower()):
        enabled = {
            info.id: info.protected or control.is_enabled(info.id, guild.id)
            for info in manager.loaded()
        }
        chosen = {}
        for capability in Capability.selectable():
            current = control.provider_for(capability, guild.id)
            name, origin = control.chosen(capability, guild.id)
            chosen[capability.value] = {
                "provider": current.id if current is not None else None,
                "origin": origin if name else "default",
            }
        servers.append(
            {"id": str(guild.id), "name": guild.name, "enabled": enabled, "providers": chosen}
        )
    providers = []
    seen: set[int] = set()
    for capability in Capability:
        for provider in manager.providers(capability):
            if id(provider) in seen:
                continue
            seen.add(id(provider))
            stats = provider.stats.as_dict()
            providers.append(
                {
                    "id": provider.id,
                    "plugin": provider.plugin_id,
                    "capability": provider.capability.value,
                    **{k: _seconds(v) if k.endswith("_s") else v for k, v in stats.items()},
                }
            )
    providers.sort(key=lambda p: (p["capability"], p["id"]))
    return {"plugins": listing, "servers": servers, "providers": providers}


def voice_sessions(bot: Any) -> dict[int, Any]:
    service = bot.voice_sessions
    return dict(getattr(service, "sessions", None) or {})


def voice(bot: Any) -> dict[str, Any]:
    sessions = []
    recent = [t for t in bot.metrics.recent_turns() if t.kind == "voice"]
    for guild_id, session in sorted(voice_sessions(bot).items()):
        channel = getattr(session.vc, "channel", None)
        encryption = session.encryption()  # hark.voice.dave.Encryption
        members = [
            m.display_name for m in getattr(channel, "members", []) if not getattr(m, "bot", False)
        ]
        sessions.append(
            {
                "guild_id": str(guild_id),
                "guild": guild_name(bot, guild_id),
                "channel": getattr(channel, "name", None),
                "members": members,
                "listening": bool(session.listening),
                "speaking": bool(session.speaking),
                "end_to_end": encryption.end_to_end,
                "encryption": encryption.describe(),
                "interruptions": session.interruptions,
                "counts": dict(session.counts),
                "turns": [turn_data(bot, t) for t in recent if t.guild_id == guild_id][:10],
            }
        )
    return {"sessions": sessions, "stages": list(VOICE_STAGES), "labels": STAGE_LABELS}


def turn_data(bot: Any, turn: TurnRecord) -> dict[str, Any]:
    data = turn.as_dict()
    data["guild"] = guild_name(bot, turn.guild_id)
    data["channel"] = channel_name(bot, turn.channel_id)
    for key in ("guild_id", "channel_id"):
        if data[key] is not None:
            data[key] = str(data[key])  # snowflakes overflow JavaScript numbers
    data["first_token_s"] = _seconds(turn.first_token_s)
    data["total_s"] = _seconds(turn.total_s)
    data["barge_in_marks"] = [m for m in BARGE_IN_MARKS if m in turn.stages]
    return data


def turns(bot: Any, limit: int = 100) -> dict[str, Any]:
    metrics = bot.metrics
    return {
        "show_text": metrics.keep_text,
        "turns": [turn_data(bot, t) for t in metrics.recent_turns(limit)],
        "first_token": {kind: metrics.first_token_percentiles(kind) for kind in ("text", "voice")},
    }


def events(bot: Any, limit: int = 200) -> dict[str, Any]:
    return {"events": [e.as_dict() for e in bot.metrics.recent_events(limit)]}
