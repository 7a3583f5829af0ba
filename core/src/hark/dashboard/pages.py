"""Server-rendered HTML for the dashboard's pages (no templates engine, no CDN).

Each page is a ``<main>`` fragment inside one layout; ``dashboard.js`` re-fetches
the fragment (``?fragment=1``) when the live stream says something changed.
Every value is escaped.
"""

from __future__ import annotations

import datetime
from html import escape
from typing import Any

from hark.metrics import BARGE_IN_MARKS, STAGE_LABELS, VOICE_STAGES

PAGES = (
    ("/", "Overview"),
    ("/plugins", "Plugins"),
    ("/voice", "Voice"),
    ("/turns", "Turns"),
    ("/events", "Events"),
)


def e(value: Any) -> str:
    return escape("" if value is None else str(value))


def ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds * 1000:.0f} ms"


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return "–"
    return datetime.datetime.fromtimestamp(timestamp).strftime("%H:%M:%S")


def duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h {minutes}m"
    if hours:
        return f"{hours}h {minutes}m {secs}s"
    return f"{minutes}m {secs}s"


def mib(value: int | None) -> str:
    return "–" if value is None else f"{value / 1048576:.1f} MiB"


def layout(path: str, title: str, main: str) -> str:
    nav = "".join(
        f'<a href="{href}"{" class=current" if href == path else ""}>{label}</a>'
        for href, label in PAGES
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)} · Hark dashboard</title>
<link rel="stylesheet" href="/static/dashboard.css">
<script src="/static/dashboard.js" defer></script>
</head><body data-page="{e(path)}">
<header><strong>Hark</strong> dashboard <nav>{nav}</nav>
<span id="live" title="live updates">○ connecting</span>
<a class="logout" href="/logout">log out</a></header>
<main>{main}</main>
</body></html>"""


def login(next_path: str, error: str | None) -> str:
    message = f'<p class="error">{e(error)}</p>' if error else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Log in · Hark dashboard</title>
<link rel="stylesheet" href="/static/dashboard.css"></head>
<body class="login"><main><h1>Hark dashboard</h1>
<p>This dashboard needs its login token (printed when the bot started, or
<code>HARK_DASHBOARD_TOKEN</code>).</p>{message}
<form method="post" action="/login">
<input type="hidden" name="next" value="{e(next_path)}">
<label>Token <input type="password" name="token" autocomplete="current-password" autofocus>
</label> <button type="submit">Log in</button></form></main></body></html>"""


def table(headers: list[str], rows: list[list[str]], empty: str, cls: str = "") -> str:
    if not rows:
        return f'<p class="empty">{e(empty)}</p>'
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


# -- pages ----------------------------------------------------------------------


def overview(data: dict[str, Any]) -> str:
    state = (
        '<span class="ok">connected</span>'
        if data["connected"]
        else '<span class="bad">not connected</span>'
    )
    first = data["turns"]["first_token"]
    cards = [
        ("Discord", state + (f" as {e(data['user'])}" if data["user"] else "")),
        ("Gateway latency", ms(data["gateway_latency_s"])),
        ("Servers", e(len(data["guilds"]))),
        ("Uptime", duration(data["uptime_s"])),
        ("Memory (RSS)", mib(data["memory_bytes"])),
        (
            "Event-loop lag",
            f"{ms(data['event_loop_lag_s'])} (max {ms(data['event_loop_lag_max_s'])})",
        ),
        ("Voice sessions", e(data["voice_sessions"])),
        ("Turns", e(data["turns"]["total"])),
        ("First token p50 / p95", f"{ms(first['p50_s'])} / {ms(first['p95_s'])}"),
        ("Events", e(data["events"]["total"])),
    ]
    if data.get("shards"):  # a sharded bot: which of its shards this process runs
        cards.insert(1, ("This process", e(data["shards"])))
    grid = "".join(
        f'<div class="card"><div class="label">{label}</div><div class="value">{value}</div></div>'
        for label, value in cards
    )
    guilds = table(
        ["Server", "Members"],
        [[e(g["name"]), e(g["members"])] for g in data["guilds"]],
        "Not in any server.",
    )
    return (
        f"<h1>Overview <small>hark {e(data['version'])}</small></h1>"
        f'<div class="cards" id="overview">{grid}</div><h2>Servers</h2>{guilds}'
    )


def plugins(data: dict[str, Any]) -> str:
    rows = []
    for p in data["plugins"]:
        if p["status"] == "loaded":
            status = '<span class="ok">loaded</span>'
        else:
            status = f'<span class="bad">{e(p["status"])}</span>'
        notes = [e(p["error"])] if p["error"] else []
        notes += [f"needs <code>{e(env)}</code>" for env in p["needs"]]
        notes += [f"⚠ {e(problem)}" for problem in p["problems"]]
        kind = "built-in" if p["builtin"] else ""
        rows.append(
            [
                f"<code>{e(p['id'])}</code>",
                e(p["version"] or "–"),
                status + (f" <small>{kind}</small>" if kind else ""),
                e(", ".join(p["provides"]) or "–"),
                "<br>".join(notes) or "–",
            ]
        )
    listing = table(
        ["Plugin", "Version", "Status", "Provides", "Errors / notes"],
        rows,
        "No plugins.",
        "plugins",
    )
    servers = []
    for server in data["servers"]:
        switches = " ".join(
            f'<span class="{"on" if on else "off"}">{e(pid)}</span>'
            for pid, on in sorted(server["enabled"].items())
        )
        chosen = table(
            ["Capability", "Provider", "Chosen by"],
            [
                [e(cap), f"<code>{e(c['provider'] or 'none')}</code>", e(c["origin"])]
                for cap, c in server["providers"].items()
            ],
            "No capabilities.",
        )
        servers.append(
            f'<section class="server"><h3>{e(server["name"])}</h3>'
            f'<p class="switches">{switches}</p>{chosen}</section>'
        )
    stats = table(
        [
            "Provider",
            "Capability",
            "Calls",
            "Errors",
            "Retries",
            "Timeouts",
            "p50",
            "p95",
            "First p50",
            "First p95",
        ],
        [
            [
                f"<code>{e(p['id'])}</code>",
                e(p["capability"]),
                e(p["calls"]),
                e(p["failures"]),
                e(p["retries"]),
                e(p["timeouts"]),
                ms(p["p50_s"]),
                ms(p["p95_s"]),
                ms(p["first_p50_s"]),
                ms(p["first_p95_s"]),
            ]
            for p in data["providers"]
        ],
        "No providers are loaded.",
        "stats",
    )
    return (
        f"<h1>Plugins</h1>{listing}<h2>Per server</h2>"
        + ("".join(servers) or '<p class="empty">Not in any server.</p>')
        + f"<h2>Provider statistics</h2>{stats}"
    )


def waterfall(turn: dict[str, Any]) -> str:
    """A turn's stages as bars on one time axis from its origin (a voice turn: the end
    of speech, then the turn decision ... the first RTP packet; a text turn: its start).
    Barge-in marks are drawn in their own colour; other stamps are listed below."""
    stages: dict[str, float] = turn["stages"]
    if not stages:
        return '<p class="empty">No stages recorded.</p>'
    if turn["kind"] == "voice":
        order = [s for s in VOICE_STAGES if s in stages]
        order += [s for s in ("warm_waited", *BARGE_IN_MARKS) if s in stages]
    else:
        order = [s for s in stages if s not in BARGE_IN_MARKS]
        order += [s for s in BARGE_IN_MARKS if s in stages]
    shown = [stages[s] for s in order]
    low = min(0.0, *shown)
    span = max(max(shown) - low, 1.0)
    zero = -low / span * 100
    rows = []
    for name in order:
        at = stages[name]
        point = (at - low) / span * 100
        left, width = min(zero, point), max(abs(point - zero), 0.5)
        mark = " mark" if name in BARGE_IN_MARKS else ""
        rows.append(
            f'<div class="stage{mark}" data-stage="{e(name)}">'
            f'<span class="name">{e(STAGE_LABELS.get(name, name))}</span>'
            f'<span class="track"><span class="bar" style="margin-left:{left:.1f}%;'
            f'width:{width:.1f}%"></span></span>'
            f'<span class="at">{at:+.0f} ms</span></div>'
        )
    others = ", ".join(
        f"{e(STAGE_LABELS.get(name, name))} {at:+.0f} ms"
        for name, at in stages.items()
        if name not in order
    )
    also = f'<div class="also">also: {others}</div>' if others else ""
    return f'<div class="waterfall" data-turn="{e(turn["id"])}">{"".join(rows)}{also}</div>'


def _outcome(turn: dict[str, Any]) -> str:
    cls = {"delivered": "ok", "failed": "bad", "interrupted": "warn"}.get(turn["outcome"], "")
    barge = ' <span class="warn">barge-in</span>' if turn["barge_in"] else ""
    return f'<span class="{cls}">{e(turn["outcome"])}</span>{barge}'


def voice(data: dict[str, Any]) -> str:
    if not data["sessions"]:
        return '<h1>Voice</h1><p class="empty">No voice sessions.</p>'
    parts = ["<h1>Voice</h1>"]
    for s in data["sessions"]:
        dave = '<span class="ok">on</span>' if s["end_to_end"] else '<span class="warn">off</span>'
        listening = '<span class="ok">yes</span>' if s["listening"] else "no"
        turns = (
            "".join(
                f'<div class="voice-turn"><h4>{when(t["started_at"])} · {_outcome(t)} · '
                f"first token {ms(t['first_token_s'])} · total {ms(t['total_s'])}</h4>"
                f"{waterfall(t)}</div>"
                for t in s["turns"]
            )
            or '<p class="empty">No turns yet.</p>'
        )
        parts.append(
            f'<section class="session"><h2>{e(s["guild"])} · voice channel {e(s["channel"])}</h2>'
            f"<dl><dt>Members</dt><dd>{e(', '.join(s['members']) or 'nobody')}</dd>"
            f"<dt>Listening</dt><dd>{listening}</dd>"
            f"<dt>End-to-end encryption (DAVE)</dt><dd>{dave} <small>"
            f"{e(s['encryption'])}</small></dd>"
            f"<dt>Interruptions</dt><dd>{e(s['interruptions'])}</dd></dl>"
            f"<h3>Recent turns</h3>{turns}</section>"
        )
    return "".join(parts)


def turns(data: dict[str, Any]) -> str:
    rows = []
    for t in data["turns"]:
        tokens = (
            "–"
            if t["prompt_tokens"] is None and t["completion_tokens"] is None
            else f"{t['prompt_tokens'] or 0} / {t['completion_tokens'] or 0}"
        )
        text = ""
        if data["show_text"] and (t["request_text"] or t["reply_text"]):
            text = (
                f'<div class="text"><b>heard:</b> {e(t["request_text"])}<br>'
                f"<b>said:</b> {e(t['reply_text'])}</div>"
            )
        error = f'<div class="error">{e(t["error"])}</div>' if t["error"] else ""
        rows.append(
            [
                when(t["started_at"]),
                e(t["kind"]),
                e(t["guild"] or "DM / console"),
                e(t["channel"] or "–"),
                ms(t["first_token_s"]),
                ms(t["total_s"]),
                tokens,
                f"<code>{e(t['provider'] or '–')}</code>",
                _outcome(t),
                waterfall(t) + text + error,
            ]
        )
    note = (
        ""
        if data["show_text"]
        else '<p class="note">Message text is hidden (turn it on with '
        "<code>HARK_DASHBOARD_SHOW_TEXT</code>).</p>"
    )
    listing = table(
        [
            "Time",
            "Kind",
            "Server",
            "Channel",
            "First token",
            "Total",
            "Tokens (in / out)",
            "Provider",
            "Outcome",
            "Stages",
        ],
        rows,
        "No turns yet.",
        "turns",
    )
    return f"<h1>Turns</h1>{note}{listing}"


def events(data: dict[str, Any]) -> str:
    rows = [
        [
            when(ev["at"]),
            f'<span class="level-{e(ev["level"].lower())}">{e(ev["level"])}</span>',
            e(ev["kind"]),
            f"<code>{e(ev['source'])}</code>",
            e(ev["message"]),
        ]
        for ev in data["events"]
    ]
    listing = table(["Time", "Level", "Kind", "Source", "Message"], rows, "No events.", "events")
    return f"<h1>Events</h1>{listing}"
