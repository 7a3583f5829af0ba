"""Persistent state in SQLite (aiosqlite), cached in memory."""

from hark.store.database import Database
from hark.store.plugin_state import GLOBAL, PluginState
from hark.store.settings import PluginSettings, SettingsStore
from hark.store.status import RuntimeStatus

__all__ = ["GLOBAL", "Database", "PluginSettings", "PluginState", "RuntimeStatus", "SettingsStore"]
