"""Persistent state: SQLite by default, PostgreSQL for several processes; cached in memory.

``open_database(config)`` picks the backend (``HARK_DATABASE_URL``); the stores
(plugin switches, settings, runtime status) work on either.
"""

from __future__ import annotations

from hark.config import Config, sqlite_path
from hark.store.database import Database, Transaction
from hark.store.errors import DatabaseBusy, DatabaseError, DatabaseUnavailable
from hark.store.plugin_state import GLOBAL, PluginState
from hark.store.settings import PluginSettings, SettingsStore
from hark.store.sqlite import SQLiteDatabase
from hark.store.status import RuntimeStatus

__all__ = [
    "GLOBAL",
    "Database",
    "DatabaseBusy",
    "DatabaseError",
    "DatabaseUnavailable",
    "PluginSettings",
    "PluginState",
    "RuntimeStatus",
    "SQLiteDatabase",
    "SettingsStore",
    "Transaction",
    "database_for_url",
    "open_database",
]


def database_for_url(url: str, *, write_patience: float | None = None) -> Database:
    """The database at ``url`` (``postgresql://...`` or ``sqlite:///path``), not yet
    opened. A PostgreSQL URL needs asyncpg (``pip install 'hark[postgresql]'``)."""
    options = {} if write_patience is None else {"write_patience": write_patience}
    path = sqlite_path(url)
    if path is not None:
        return SQLiteDatabase(path, **options)
    if url.startswith(("postgresql://", "postgres://")):
        from hark.store.postgres import PostgresDatabase

        return PostgresDatabase(url, **options)
    raise ValueError("a database URL starts with postgresql:// or sqlite:///")


def open_database(config: Config, *, write_patience: float | None = None) -> Database:
    """The bot's database as configured (``HARK_DATABASE_URL``, else the SQLite file in
    ``HARK_DATA_DIR``), not yet opened: ``await db.open()``."""
    if config.database_url:
        return database_for_url(config.database_url, write_patience=write_patience)
    options = {} if write_patience is None else {"write_patience": write_patience}
    return SQLiteDatabase(config.database_path, **options)
