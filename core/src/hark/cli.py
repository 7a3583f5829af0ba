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

    from hark.bot import HarkBot, point_discord_at
    from hark.runtime import Runtime

    token = config.require_token()
    gateway = config.gateway_url
    if config.api_base != DISCORD_API_BASE and not gateway:
        gateway = await discover_gateway(config, token)
    point_discord_at(config.api_base, gateway)

    bot = HarkBot(Runtime(config))
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
            4010: "invalid shard",
            4011: "sharding required",
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
    config.require_token()
    register_environment_secrets()
    register_secret(config.token.get())
    setup_logging(args.log_level or config.log_level)
    return asyncio.run(run_bot(config))


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
    from hark.store import Database, RuntimeStatus

    if not config.database_path.exists():
        return []
    db = Database(config.database_path, write_patience=2.0)
    try:
        await db.open()
        return await RuntimeStatus(db).reports()
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


if __name__ == "__main__":
    sys.exit(main())
