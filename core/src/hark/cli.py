"""The ``bot`` command.

Exit codes: 0 success, 1 a runtime failure (unreachable server, a plugin's prepare
failed), 2 a configuration or usage mistake (missing or rejected token, bad
bot.toml). Expected mistakes print one ``error: ...`` line, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hark import __version__
from hark.config import DISCORD_API_BASE, Config, ConfigError, load_config

log = logging.getLogger("hark.cli")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


def _fail(message: str, code: int) -> int:
    from hark.logs import redact

    print(f"error: {redact(message)}", file=sys.stderr)
    return code


# -- bot run ---------------------------------------------------------------


async def discover_gateway(config: Config, token: str) -> str:
    """Ask a non-default API base for its gateway URL (``GET /gateway/bot``)."""
    import aiohttp

    url = f"{config.api_base}/gateway/bot"
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                url,
                headers={"Authorization": f"Bot {token}"},
                timeout=aiohttp.ClientTimeout(total=15),
            ) as response,
        ):
            if response.status == 401:
                raise CliError("Discord rejected DISCORD_BOT_TOKEN (401 Unauthorized).", EXIT_USAGE)
            if response.status != 200:
                raise CliError(f"{url} answered HTTP {response.status}; set DISCORD_GATEWAY_URL.")
            data = await response.json()
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise CliError(
            f"cannot reach DISCORD_API_BASE {config.api_base}: {exc or type(exc).__name__}"
        ) from None
    return str(data["url"])


async def run_bot(config: Config, *, ready: asyncio.Event | None = None) -> int:
    import aiohttp
    import discord

    from hark.bot import HarkBot, make_bot, point_discord_at
    from hark.runtime import Runtime

    token = config.require_token()
    gateway = config.gateway_url
    if config.api_base != DISCORD_API_BASE and not gateway:
        gateway = await discover_gateway(config, token)
    point_discord_at(config.api_base, gateway)

    bot = make_bot(Runtime(config))
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    closing: list[asyncio.Task[None]] = []

    def request_stop(signame: str) -> None:
        if not stopping.is_set():
            log.info("received %s, shutting down", signame)
            stopping.set()
            closing.append(loop.create_task(bot.close()))

    for sig in (signal.SIGINT, signal.SIGTERM):
        # Not available off the main thread or off POSIX; Ctrl-C still raises there.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, request_stop, sig.name)
    if ready is not None:
        bot.add_listener(_set_event(ready), "on_ready")
    try:
        async with bot:
            await bot.start(token)
        # bot.start returns as soon as the gateway closes; let close() finish its
        # cleanup (providers' aclose, the database) before asyncio.run cancels it.
        await asyncio.gather(*closing, return_exceptions=True)
    except discord.LoginFailure:
        raise CliError(
            "Discord rejected DISCORD_BOT_TOKEN (401 Unauthorized): check the token.", EXIT_USAGE
        ) from None
    except discord.PrivilegedIntentsRequired:
        raise CliError(
            "Discord refused the privileged intents: enable Message Content and Server Members "
            "for the bot in the Developer Portal.",
            EXIT_USAGE,
        ) from None
    except (aiohttp.ClientError, discord.GatewayNotFound, OSError) as exc:
        raise CliError(f"cannot reach Discord at {config.api_base}: {exc}") from None
    except discord.ConnectionClosed as exc:
        # discord.py gives up on these close codes (4004, 4010-4014) rather than reconnect.
        if exc.code == 4004:
            raise CliError(
                "Discord rejected DISCORD_BOT_TOKEN (gateway close 4004): check the token.",
                EXIT_USAGE,
            ) from None
        meaning = {
            4010: "invalid shard: --shard-count must be the bot's shard count",
            4011: "sharding required: run the bot with --shard-count, see docs/scaling.md",
            4012: "invalid API version",
            4013: "invalid intents",
        }.get(exc.code, "not reconnecting")
        raise CliError(
            f"Discord closed the gateway connection with code {exc.code} ({meaning})"
        ) from None
    except discord.HTTPException as exc:
        # An answer discord.py gave up on, e.g. an endpoint a Discord-compatible server lacks.
        from hark.gateway_guard import describe

        response = getattr(exc, "response", None)
        where = f" {response.method} {response.url.path}" if response is not None else ""
        log.debug("Discord API error during start-up", exc_info=exc)
        raise CliError(f"Discord answered{where} with an error: {describe(exc)}") from None
    except Exception as exc:
        from hark.gateway_guard import describe, raised_outside_hark

        # Hark's own bugs keep their traceback; anything raised inside discord.py or
        # aiohttp (a payload they cannot handle) is one line, the traceback at DEBUG.
        if not raised_outside_hark(exc, run_bot, HarkBot.connect):
            raise
        log.debug("unexpected failure talking to Discord", exc_info=exc)
        raise CliError(f"unexpected failure talking to Discord: {describe(exc)}") from None
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    log.info("bot stopped")
    return EXIT_OK


def _set_event(event: asyncio.Event):
    async def on_ready() -> None:
        event.set()

    return on_ready


def cmd_run(args: argparse.Namespace) -> int:
    from hark.logs import register_environment_secrets, register_secret, setup_logging

    config = _load(args)
    if args.data_dir:
        config.data_dir = Path(args.data_dir)
    _apply_shard_options(config, args)
    config.require_token()
    register_environment_secrets()
    register_secret(config.token.get())
    setup_logging(args.log_level or config.log_level)
    return asyncio.run(run_bot(config))


def _apply_shard_options(config: Config, args: argparse.Namespace) -> None:
    """``--shards`` / ``--shard-count`` override HARK_SHARDS / HARK_SHARD_COUNT; a bad
    value is one usage line (exit 2), never argparse's usage dump."""
    from hark.config import check_shards, parse_shards

    if args.shards is not None:
        try:
            config.shards = parse_shards(args.shards)
        except ValueError as exc:
            raise ConfigError(f"--shards: {exc}") from None
    if args.shard_count is not None:
        text = args.shard_count.strip()
        if not text.isdigit():
            raise ConfigError(f"--shard-count: expected a number of shards, got {text!r}")
        config.shard_count = int(text)
    check_shards(config)


def cmd_console(args: argparse.Namespace) -> int:
    from hark.console import run_console
    from hark.logs import register_environment_secrets, setup_logging

    config = _load(args)
    register_environment_secrets()
    setup_logging(args.log_level or "WARNING")
    return asyncio.run(run_console(config))


# -- bot plugins / prepare ---------------------------------------------------


def _manager(config: Config):
    from hark.runtime import Runtime

    return Runtime(config).manager


async def _running_reports(config: Config) -> list[Any]:
    """What running bot processes on this database report (none if it doesn't exist:
    `bot plugins` never creates one)."""
    from hark.store import DatabaseUnavailable, RuntimeStatus, open_database

    db = open_database(config, write_patience=2.0)
    if db.dialect == "sqlite" and not config.database_path.exists():
        return []
    try:
        await db.open()
        return await RuntimeStatus(db).reports()
    except DatabaseUnavailable as exc:  # listed all the same, without what they report
        print(f"(not showing what running bots report: {exc})", file=sys.stderr)
        return []
    except Exception as exc:  # the listing is still useful without it
        log.debug("could not read the running bot's status: %s", exc)
        return []
    finally:
        await db.close()


def cmd_plugins(args: argparse.Namespace) -> int:
    config = _load(args)
    listing = _manager(config).listing()
    reports = asyncio.run(_running_reports(config))
    running: dict[str, list[str]] = {}
    for report in reports:
        for plugin_id, line in report.problems.items():
            prefix = f"{report.process}: " if len(reports) > 1 else ""
            running.setdefault(plugin_id, []).append(prefix + line)
    for plugin in listing:
        plugin["running"] = running.get(plugin["id"], [])
    if args.json:
        print(json.dumps(listing, indent=2))
        return EXIT_OK
    if not listing:
        print("No plugins installed.")
        return EXIT_OK
    width = max(len(p["id"]) for p in listing)
    for plugin in listing:
        version = plugin["version"] or "-"
        if plugin["status"] == "loaded":
            detail = ", ".join(plugin["provides"]) or "no providers"
            detail += "".join(f", needs {env}" for env in plugin.get("needs", ()))
            hooks = ", ".join(plugin["hooks"])
            warn = "".join(f"  ⚠ {line}" for line in plugin["running"])
            print(f"{plugin['id']:<{width}}  {version:<8}  {detail}  [{hooks}]{warn}")
        else:
            problem = plugin["error"] or "not loaded"
            print(f"{plugin['id']:<{width}}  {version:<8}  {plugin['status'].upper()}: {problem}")
    if reports:
        ages = ", ".join(
            f"{report.process} {max(0, time.time() - report.updated_at):.0f} s ago"
            for report in reports
        )
        print(f"(running on this database: {ages}; ⚠ lines are what it reports)")
    return EXIT_OK


async def _call_prepare(fn, progress, settings: Any) -> Any:
    params = inspect.signature(fn).parameters
    kwargs: dict[str, Any] = {}
    if "progress" in params:
        kwargs["progress"] = progress
    if "settings" in params:
        # The bot-wide values (bot.toml, environment, the owner's), as `bot run` has them.
        kwargs["settings"] = settings
    if inspect.iscoroutinefunction(fn):
        return await fn(**kwargs)
    result = await asyncio.to_thread(fn, **kwargs)  # a download may block for minutes
    return await result if inspect.isawaitable(result) else result


def cmd_prepare(args: argparse.Namespace) -> int:
    from hark.runtime import Runtime

    config = _load(args)
    runtime = Runtime(config)
    todo = [
        p
        for p in runtime.manager.loaded()
        if p.prepare is not None and (not args.plugins or p.id in args.plugins)
    ]
    if not todo:
        print("Nothing to prepare: no loaded plugin has a prepare() step.")
        return EXIT_OK
    return asyncio.run(_prepare(runtime, todo))


async def _prepare(runtime: Any, todo: list[Any]) -> int:
    await runtime.open()
    failed = 0
    try:
        for index, info in enumerate(todo, start=1):
            label = f"[{index}/{len(todo)}] {info.id}"
            print(f"{label}: preparing...", flush=True)
            started = time.perf_counter()

            def progress(message: str, fraction: float | None = None, _label: str = label) -> None:
                pct = f" {fraction * 100:3.0f}%" if fraction is not None else ""
                print(f"{_label}:{pct} {message}", flush=True)

            settings = None
            if info.plugin is not None and info.plugin.settings is not None:
                settings = runtime.settings.resolve(info.id).values
            try:
                await _call_prepare(info.prepare, progress, settings)
            except Exception as exc:
                failed += 1
                print(f"{label}: FAILED: {type(exc).__name__}: {exc}", flush=True)
                continue
            print(f"{label}: done in {time.perf_counter() - started:.1f}s", flush=True)
    finally:
        await runtime.close()
    return EXIT_FAILURE if failed else EXIT_OK


# -- bot install / uninstall ---------------------------------------------------


def pip_target(name: str) -> str:
    """Map a plugin id or name to what pip installs: a local path, or ``hark-<id>``."""
    if Path(name).exists() or any(ch in name for ch in "/\\=<>[@") or name.startswith("hark"):
        return name
    local = Path("plugins") / name
    if (local / "pyproject.toml").is_file():
        return str(local)
    return "hark-" + name.replace("_", "-")


def _pip(action: str, names: Sequence[str], extra: Sequence[str]) -> int:
    targets = (
        [pip_target(n) for n in names]
        if action == "install"
        else [
            n if n.startswith("hark") or Path(n).exists() else "hark-" + n.replace("_", "-")
            for n in names
        ]
    )
    command = [sys.executable, "-m", "pip", action, *extra, *targets]
    print("$ " + " ".join(command), flush=True)
    return subprocess.call(command)


def cmd_install(args: argparse.Namespace) -> int:
    return _pip("install", args.names, ["--upgrade"] if args.upgrade else [])


def cmd_uninstall(args: argparse.Namespace) -> int:
    return _pip("uninstall", args.names, ["--yes"])


# -- bot db migrate / copy -------------------------------------------------------
# The work is in hark.store.copy; these parse, report and map errors to exit codes.


def _installed_migrations(config: Config) -> dict[str, tuple[Any, ...]]:
    """The migrations of the plugins `bot run` would load, by plugin id."""
    return {
        info.id: tuple(info.plugin.migrations)
        for info in _manager(config).loaded()
        if info.plugin is not None and info.plugin.migrations
    }


def _db_setup(config: Config, *urls: str | None) -> None:
    from hark.logs import register_environment_secrets, register_secret, setup_logging
    from hark.store.copy import url_password

    register_environment_secrets()
    for url in urls:
        register_secret(url_password(url))
    setup_logging("WARNING")


def cmd_db_migrate(args: argparse.Namespace) -> int:
    config = _load(args)
    _db_setup(config, args.url, config.database_url)
    return asyncio.run(_db_migrate(config, args.url, _installed_migrations(config)))


async def _db_migrate(config: Config, url: str | None, plugins: dict[str, Any]) -> int:
    from hark.store import open_database
    from hark.store.copy import CopyError, database_for_url, migrate, open_counting
    from hark.store.errors import DatabaseError

    try:
        db = database_for_url(url) if url else open_database(config)
    except CopyError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    print(f"database: {db.display_url}", flush=True)
    try:
        before = await open_counting(db)
        report = await migrate(db, plugins, core_before=before)
    except CopyError as exc:
        raise CliError(str(exc), EXIT_USAGE if exc.usage else EXIT_FAILURE) from None
    except DatabaseError as exc:
        raise CliError(str(exc)) from None
    finally:
        with contextlib.suppress(Exception):
            await db.close()
    for line in report.lines():
        print(line)
    return EXIT_OK


def cmd_db_copy(args: argparse.Namespace) -> int:
    config = _load(args)
    _db_setup(config, args.source, args.target)
    plugins = _installed_migrations(config)
    return asyncio.run(_db_copy(args.source, args.target, plugins, args.skip_plugin))


async def _db_copy(
    source_url: str, target_url: str, plugins: dict[str, Any], skip: list[str]
) -> int:
    from hark.store.copy import (
        CopyError,
        copy_database,
        database_for_url,
        open_counting,
        same_database,
    )
    from hark.store.errors import DatabaseError

    try:
        source = database_for_url(source_url, must_exist=True)
        target = database_for_url(target_url)
    except CopyError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    if same_database(source, target):
        raise CliError(f"--from and --to are the same database ({source.display_url})", EXIT_USAGE)
    print(f"from {source.display_url}\nto   {target.display_url}", flush=True)
    try:
        await source.open()
        before = await open_counting(target)
        report = await copy_database(
            source,
            target,
            plugins=plugins,
            skip_plugins=skip,
            target_core_before=before,
            progress=_CopyProgress(sys.stdout),
        )
    except CopyError as exc:
        raise CliError(str(exc), EXIT_USAGE if exc.usage else EXIT_FAILURE) from None
    except DatabaseError as exc:
        raise CliError(str(exc)) from None
    finally:
        for db in (target, source):
            with contextlib.suppress(Exception):
                await db.close()
    _print_copy_report(report)
    differ = report.differences
    if differ:
        detail = "; ".join(
            f"{t.table}: {t.source} rows in the source, {t.found} found in the target"
            + (", checksums differ" if t.found == t.source else "")
            for t in differ
        )
        raise CliError(f"the target does not match the source ({detail})")
    rows = sum(t.source for t in report.tables)
    print(f"verified: all {rows} source rows are in the target, unchanged (counts and checksums)")
    return EXIT_OK


class _CopyProgress:
    """`bot db copy`'s progress: on a terminal a bar redrawn in place, otherwise one
    plain line per table when it is done (as `bot prepare` prints its steps)."""

    WIDTH = 30

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self._drawn = 0.0

    def __call__(self, step: Any) -> None:
        label = f"[{step.index}/{step.tables}] {step.table}"
        done = step.finished
        if done is not None:
            rows = "row" if done.source == 1 else "rows"
            line = f"{label}: {done.source} {rows}, {done.copied} copied"
            line += f", {done.already} already there"
            print(("\r\x1b[K" if self.tty else "") + line, file=self.stream, flush=True)
            return
        now = time.monotonic()
        if not self.tty or (step.done and now - self._drawn < 0.1):
            return  # at most ten redraws a second
        self._drawn = now
        fraction = min(1.0, step.done / step.rows) if step.rows else 0.0
        bar = "#" * round(fraction * self.WIDTH)
        print(
            f"\r\x1b[K{label} [{bar:.<{self.WIDTH}}] {fraction * 100:3.0f}%"
            f" {step.done}/{step.rows} rows",
            end="",
            file=self.stream,
            flush=True,
        )


def _print_copy_report(report: Any) -> None:
    for line in report.migrated.lines():
        if "applied" in line:
            print(f"target {line}")
    headers = ("table", "source", "copied", "already there", "checksum")
    rows = [
        (t.table, str(t.source), str(t.copied), str(t.already), t.source_checksum[:12])
        for t in report.tables
    ]
    total = [sum(t.source for t in report.tables), report.copied]
    total.append(sum(t.already for t in report.tables))
    rows.append(("total", *(str(n) for n in total), ""))
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    print()
    for row in [headers, *rows]:
        numbers = zip(row[1:4], widths[1:4], strict=True)
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in numbers]
        print("  ".join([*cells, row[4]]).rstrip())
    for table, why in report.left_behind:
        print(f"not copied: {table} ({why})")
    for t in report.tables:
        if t.note:
            print(f"note: {t.table}: {t.note}")


# -- plumbing ------------------------------------------------------------------


def _load(args: argparse.Namespace) -> Config:
    return load_config(args.config)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bot", description="Hark: a plugin-based AI companion for Discord."
    )
    parser.add_argument("--version", action="version", version=f"hark {__version__}")
    parser.add_argument(
        "--config", metavar="PATH", help="bot.toml to read (default: ./bot.toml if present)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="connect to Discord and run the bot")
    run.add_argument("--data-dir", help="where the SQLite database lives (HARK_DATA_DIR)")
    run.add_argument("--log-level", help="DEBUG, INFO, WARNING... (HARK_LOG_LEVEL)")
    run.add_argument(
        "--shards",
        metavar="IDS",
        help="this process's shards, e.g. 0-3 or 0,2,5 (HARK_SHARDS; needs --shard-count)",
    )
    run.add_argument(
        "--shard-count",
        metavar="N",
        help="how many shards the whole bot has (HARK_SHARD_COUNT); alone: run all of them",
    )
    run.set_defaults(func=cmd_run)

    console = sub.add_parser("console", help="talk to the bot in this terminal, without Discord")
    console.add_argument("--log-level", help="log level for the console (default WARNING)")
    console.set_defaults(func=cmd_console)

    plugins = sub.add_parser(
        "plugins", help="list installed plugins, their versions, hooks and errors"
    )
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    plugins.set_defaults(func=cmd_plugins)

    install = sub.add_parser("install", help="pip-install plugins into this environment")
    install.add_argument(
        "names", nargs="+", help="plugin ids (llm_ollama), paths or pip requirements"
    )
    install.add_argument("-U", "--upgrade", action="store_true")
    install.set_defaults(func=cmd_install)

    uninstall = sub.add_parser("uninstall", help="pip-uninstall plugins from this environment")
    uninstall.add_argument("names", nargs="+")
    uninstall.set_defaults(func=cmd_uninstall)

    prepare = sub.add_parser(
        "prepare", help="run each plugin's prepare() step (download/check models)"
    )
    prepare.add_argument("plugins", nargs="*", help="only these plugin ids")
    prepare.set_defaults(func=cmd_prepare)

    db = sub.add_parser("db", help="the database: apply migrations, copy a bot's data to another")
    db.set_defaults(func=lambda _args, _db=db: _db.print_help() or EXIT_USAGE)
    db_actions = db.add_subparsers(dest="db_command", metavar="ACTION")
    db_migrate = db_actions.add_parser(
        "migrate", help="apply the core's and the installed plugins' migrations"
    )
    db_migrate.add_argument(
        "--url",
        help="sqlite:///PATH or postgresql://... (default: HARK_DATABASE_URL, else the "
        "SQLite file in HARK_DATA_DIR)",
    )
    db_migrate.set_defaults(func=cmd_db_migrate)
    db_copy = db_actions.add_parser(
        "copy", help="copy this bot's data into another database (safe to re-run)"
    )
    db_copy.add_argument("--from", dest="source", required=True, metavar="URL")
    db_copy.add_argument("--to", dest="target", required=True, metavar="URL")
    db_copy.add_argument(
        "--skip-plugin",
        action="append",
        default=[],
        metavar="ID",
        help="leave this plugin's tables behind (one that is not installed here)",
    )
    db_copy.set_defaults(func=cmd_db_copy)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.func(args)
    except ConfigError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except CliError as exc:
        return _fail(str(exc), exc.code)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # The database could not be reached (`bot run` at start-up, `bot console`): one
        # line naming it, password hidden. Loaded only if the store was.
        errors = sys.modules.get("hark.store.errors")
        if errors is not None and isinstance(exc, errors.DatabaseUnavailable):
            return _fail(str(exc), EXIT_FAILURE)
        raise


if __name__ == "__main__":
    sys.exit(main())
