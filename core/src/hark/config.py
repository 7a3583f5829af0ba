"""Bot settings: defaults < ``bot.toml`` < environment (``.env`` included).

Every setting has a default, so ``bot.toml`` is optional. Secrets (tokens, keys)
belong in the environment or ``.env``; they are held in :class:`Secret` so that
printing or logging a config never shows them.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

DISCORD_API_BASE = "https://discord.com/api/v10"
_SECRET_KEY = re.compile(r"(token|key|secret|password)", re.IGNORECASE)


class ConfigError(Exception):
    """A setting is missing or invalid. The message is one readable line, secret-free."""


class Secret:
    """A string that does not reveal itself in ``repr``/``str``/logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__


def _split_list(value: str | list[str] | None) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    if not isinstance(value, str):
        raise TypeError(f"expected a list or a comma-separated string, got {value!r}")
    return [part.strip() for part in value.split(",") if part.strip()]


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {value!r}")


@dataclass(frozen=True, slots=True)
class _Field:
    env: str
    toml: str  # dotted path in bot.toml
    kind: str = "str"  # str | int | float | bool | list | secret | path | shards


# attribute name -> where it comes from. One table, so docs/configuration.md and
# the loader cannot drift apart silently (a test checks the docs mention each env name).
FIELDS: dict[str, _Field] = {
    "token": _Field("DISCORD_BOT_TOKEN", "discord.token", "secret"),
    "api_base": _Field("DISCORD_API_BASE", "discord.api_base"),
    "gateway_url": _Field("DISCORD_GATEWAY_URL", "discord.gateway_url"),
    "prefix": _Field("BOT_PREFIX", "bot.prefix"),
    "owner_ids": _Field("HARK_OWNER_IDS", "bot.owner_ids", "list"),
    "data_dir": _Field("HARK_DATA_DIR", "bot.data_dir", "path"),
    "database_url": _Field("HARK_DATABASE_URL", "bot.database_url"),
    "log_level": _Field("HARK_LOG_LEVEL", "bot.log_level"),
    "load_plugins": _Field("HARK_LOAD_PLUGINS", "plugins.load", "list"),
    "block_plugins": _Field("HARK_BLOCK_PLUGINS", "plugins.block", "list"),
    "sync_commands": _Field("HARK_SYNC_COMMANDS", "bot.sync_commands", "bool"),
    "provider_deadline": _Field("HARK_PROVIDER_DEADLINE", "bot.provider_deadline", "float"),
    # sharding (docs/scaling.md): this process's shards, and how many the bot has
    "shards": _Field("HARK_SHARDS", "bot.shards", "shards"),
    "shard_count": _Field("HARK_SHARD_COUNT", "bot.shard_count", "int"),
    # text conversation
    "trigger_names": _Field("BOT_TRIGGER_NAMES", "chat.trigger_names", "list"),
    "system_prompt": _Field("SYSTEM_PROMPT", "chat.system_prompt"),
    "history_depth": _Field("HISTORY_DEPTH", "chat.history_depth", "int"),
    "answer_dms": _Field("CHAT_ANSWER_DMS", "chat.answer_dms", "bool"),
    "edit_interval": _Field("CHAT_EDIT_INTERVAL", "chat.edit_interval", "float"),
    "rate_limit": _Field("CHAT_RATE_LIMIT", "chat.rate_limit"),
    # the operator dashboard (hark.dashboard; docs/dashboard.md)
    "dashboard": _Field("HARK_DASHBOARD", "dashboard.bind"),
    "dashboard_token": _Field("HARK_DASHBOARD_TOKEN", "dashboard.token", "secret"),
    "dashboard_show_text": _Field("HARK_DASHBOARD_SHOW_TEXT", "dashboard.show_text", "bool"),
}

DASHBOARD_DEFAULT_BIND = "127.0.0.1:8765"

DEFAULT_SYSTEM_PROMPT = (
    "You are {bot_name}, a friendly and helpful companion in a Discord server. "
    "Several people may talk to you; each of their messages starts with their name. "
    "Answer the latest message. Keep replies short and conversational unless asked for detail."
)


@dataclass(slots=True)
class Config:
    token: Secret = field(default_factory=lambda: Secret(""))
    api_base: str = DISCORD_API_BASE
    gateway_url: str | None = None
    prefix: str = "!"
    owner_ids: list[str] = field(default_factory=list)
    data_dir: Path = Path("data")
    # postgresql://user:password@host/db or sqlite:///path; None: data_dir/hark.sqlite3.
    database_url: str | None = None
    log_level: str = "INFO"
    # None: load every installed plugin; []: load none.
    load_plugins: list[str] | None = None
    block_plugins: list[str] = field(default_factory=list)
    sync_commands: bool = True
    # Seconds a user waits at most for a provider's first result (an LLM's first
    # token, a transcript, the first audio), across all retries; 0 turns the cap off.
    provider_deadline: float = 45.0
    # This process's shards (None: all of shard_count) and the bot's shard count (None:
    # not sharded, one commands.Bot as before). See docs/scaling.md.
    shards: list[int] | None = None
    shard_count: int | None = None
    # None: the bot's own name
    trigger_names: list[str] | None = None
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    history_depth: int = 12
    answer_dms: bool = True
    edit_interval: float = 1.0
    # "N/SECONDS" per user; "0" or "" turns the limit off
    rate_limit: str = "8/60"
    # "host:port" the dashboard serves on; None: no dashboard (the default).
    dashboard: str | None = None
    # The dashboard's login token; empty: one is generated and printed at start-up.
    dashboard_token: Secret = field(default_factory=lambda: Secret(""))
    # Keep and show message text in the dashboard's turns (off: times and counts only).
    dashboard_show_text: bool = False
    # [providers] capability = "plugin id": the default provider per capability.
    default_providers: dict[str, str] = field(default_factory=dict)
    # [plugin.<id>] tables: global defaults for that plugin's settings.
    plugin_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Everything bot.toml held, for settings added by later features.
    raw: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None

    @property
    def database_path(self) -> Path:
        """The SQLite file: a ``sqlite:///`` HARK_DATABASE_URL's, else in data_dir."""
        path = sqlite_path(self.database_url) if self.database_url else None
        return path if path is not None else self.data_dir / "hark.sqlite3"

    @property
    def shard_ids(self) -> list[int] | None:
        """The shards this process runs (all of ``shard_count`` when ``shards`` is
        unset); None when the bot is not sharded."""
        if self.shard_count is None:
            return None
        return list(self.shards) if self.shards is not None else list(range(self.shard_count))

    def require_token(self) -> str:
        token = self.token.get().strip()
        if not token:
            raise ConfigError(
                "DISCORD_BOT_TOKEN is not set: put it in .env or the environment "
                "(see docs/configuration.md)."
            )
        return token


def _lookup(table: Mapping[str, Any], dotted: str) -> Any:
    node: Any = table
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _convert(name: str, spec: _Field, value: Any, origin: str) -> Any:
    try:
        if spec.kind == "secret":
            return Secret(str(value).strip())
        if spec.kind == "list":
            return _split_list(value)
        if spec.kind == "shards":
            return parse_shards(value)
        if spec.kind == "bool":
            return _bool(value)
        if spec.kind == "int":
            return int(value)
        if spec.kind == "float":
            return float(value)
        if spec.kind == "path":
            return Path(str(value)).expanduser()
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{origin}: invalid value for {name}: {exc}") from None


def load_config(
    toml_path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    dotenv: str | Path | None = ".env",
) -> Config:
    """Build the config. ``.env`` fills only variables the environment lacks."""
    if environ is None:
        if dotenv is not None and Path(dotenv).is_file():
            from dotenv import load_dotenv

            load_dotenv(dotenv, override=False)
        environ = os.environ

    path = Path(toml_path) if toml_path else Path(environ.get("HARK_CONFIG", "bot.toml"))
    table: dict[str, Any] = {}
    if path.is_file():
        try:
            table = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    elif toml_path:
        raise ConfigError(f"{path}: config file not found")

    config = Config(raw=table, source=path if path.is_file() else None)
    for name, spec in FIELDS.items():
        value = _lookup(table, spec.toml)
        origin = f"{path}"
        # An empty variable counts as unset (compose files pass "" for missing ones),
        # except for lists, where "" is meaningful (HARK_LOAD_PLUGINS= loads none).
        if spec.env in environ and (environ[spec.env] != "" or spec.kind == "list"):
            value, origin = environ[spec.env], f"environment variable {spec.env}"
        if value is not None:
            setattr(config, name, _convert(name, spec, value, origin))

    providers = table.get("providers", {})
    if not isinstance(providers, dict):
        raise ConfigError(f"{path}: [providers] must be a table")
    config.default_providers = {str(k): str(v) for k, v in providers.items()}
    for capability in ("transcribe", "generate", "synthesize"):
        env_name = f"HARK_DEFAULT_{capability.upper()}"
        if environ.get(env_name):
            config.default_providers[capability] = environ[env_name].strip()

    plugin_tables = table.get("plugin", {})
    if not isinstance(plugin_tables, dict):
        raise ConfigError(f"{path}: [plugin.<id>] sections must be tables")
    config.plugin_settings = {
        str(k): dict(v) for k, v in plugin_tables.items() if isinstance(v, dict)
    }
    config.api_base = config.api_base.rstrip("/")
    if config.dashboard is None and isinstance(table.get("dashboard"), dict):
        config.dashboard = DASHBOARD_DEFAULT_BIND  # a [dashboard] table turns it on
    if config.dashboard is not None and config.dashboard.strip().lower() in ("", "off", "0"):
        config.dashboard = None
    _validate(config)
    return config


def _validate(config: Config) -> None:
    """Reject values that would only fail later, deep inside a feature."""
    from hark.chat.ratelimit import parse_rate

    try:
        parse_rate(config.rate_limit)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if config.history_depth < 0:
        raise ConfigError("HISTORY_DEPTH must be 0 or more")
    if config.edit_interval < 0:
        raise ConfigError("CHAT_EDIT_INTERVAL must be 0 or more seconds")
    if config.provider_deadline < 0:
        raise ConfigError("HARK_PROVIDER_DEADLINE must be 0 (no cap) or more seconds")
    if not config.prefix.strip():
        raise ConfigError("BOT_PREFIX must not be blank")
    if config.database_url is not None and not config.database_url.strip():
        config.database_url = None
    if config.database_url is not None and (
        not config.database_url.startswith(DATABASE_SCHEMES) or config.database_url == "sqlite:///"
    ):
        raise ConfigError(
            f"HARK_DATABASE_URL must start with postgresql:// or sqlite:///, "
            f"got {display_url(config.database_url)!r}"
        )
    if config.dashboard is not None:
        try:
            parse_bind(config.dashboard)
        except ValueError as exc:
            raise ConfigError(f"HARK_DASHBOARD: {exc}") from None


def parse_bind(value: str) -> tuple[str, int]:
    """``"host:port"`` (``"[::1]:8765"`` for IPv6; a bare port binds to 127.0.0.1)."""
    text = value.strip()
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected host:port, e.g. {DASHBOARD_DEFAULT_BIND}, got {value!r}")
    return host, int(port)


# HARK_DATABASE_URL: the store's backends (hark.store.database_for_url).
DATABASE_SCHEMES = ("postgresql://", "postgres://", "sqlite:///")
_URL_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def display_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, tail = rest.partition("/")
    userinfo, at, hostport = netloc.rpartition("@")  # the password may hold an "@"
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hostport}"
    return _URL_PASSWORD.sub(r"\1***", f"{scheme}://{netloc}{slash}{tail}")


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (``sqlite:///data/x.db`` is relative,
    ``sqlite:////srv/x.db`` absolute, as in SQLAlchemy); None for other URLs."""
    if not url.startswith("sqlite:///"):
        return None
    return Path(url[len("sqlite:///") :]).expanduser()


_SHARD_PART = re.compile(r"(\d+)(?:\s*-\s*(\d+))?")
# A range this long is a typo (Discord's biggest bots run a few thousand shards).
_MAX_SHARD_RANGE = 100_000


def parse_shards(value: Any) -> list[int]:
    """Shard ids from ``"0-3"``, ``"0,2,5"`` or ``"0-3,8"`` (or a bot.toml list or
    number): sorted, each once. Raises ValueError for anything else."""
    items = value if isinstance(value, list) else [value]
    ids: set[int] = set()
    for item in items:
        if isinstance(item, bool):
            raise ValueError(f"expected shard ids like 0-3 or 0,2,5, got {value!r}")
        if isinstance(item, int):
            ids.add(item)
            continue
        for part in str(item).split(","):
            match = _SHARD_PART.fullmatch(part.strip())
            if match is None:
                raise ValueError(f"expected shard ids like 0-3 or 0,2,5, got {value!r}")
            low = int(match[1])
            high = int(match[2]) if match[2] is not None else low
            if high < low or high - low >= _MAX_SHARD_RANGE:
                raise ValueError(f"{part.strip()!r} is not a range of shard ids (low-high)")
            ids.update(range(low, high + 1))
    if not ids:
        raise ValueError("no shard ids given")
    return sorted(ids)


def format_shards(ids: list[int] | range) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"`` (for log lines and status)."""
    runs: list[str] = []
    ordered = sorted(set(ids))
    start = previous = None
    for shard in [*ordered, None]:
        if previous is not None and shard == previous + 1:
            previous = shard
            continue
        if start is not None:
            runs.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = shard
    return ",".join(runs)


def check_shards(config: Config) -> None:
    """Reject a shard setting discord.py would refuse or Discord would close with 4010:
    shards without a shard count, a count below 1, a shard id outside the count."""
    count = config.shard_count
    if count is None:
        if config.shards is not None:
            raise ConfigError(
                "--shards (HARK_SHARDS) needs --shard-count (HARK_SHARD_COUNT): "
                "how many shards the whole bot has"
            )
        return
    if count < 1:
        raise ConfigError(f"--shard-count (HARK_SHARD_COUNT) must be 1 or more, got {count}")
    outside = [s for s in config.shards or () if not 0 <= s < count]
    if outside:
        raise ConfigError(
            f"shard {outside[0]} does not exist with a shard count of {count}: shard ids "
            f"go from 0 to {count - 1} (--shards / HARK_SHARDS)"
        )


def describe(config: Config) -> dict[str, Any]:
    """The config as plain data, secrets masked (for `bot run --check` and debugging)."""
    out: dict[str, Any] = {}
    for f in fields(config):
        if f.name == "raw":
            continue
        value = getattr(config, f.name)
        if isinstance(value, Secret):
            value = repr(value)
        elif f.name == "database_url" and value:
            value = display_url(value)
        elif f.name == "plugin_settings":
            value = {
                plugin: {k: "***" if _SECRET_KEY.search(k) else v for k, v in table.items()}
                for plugin, table in value.items()
            }
        out[f.name] = value
    return out
