"""Application command registry (global and per guild), as the REST API manages it.

Like Discord, a bulk overwrite keeps the id of a command whose name and type did
not change, so ids stay stable across ``tree.sync()`` calls.
"""

from __future__ import annotations

from typing import Any

from . import errors
from .base import ServerCore
from .state import AppCommandRecord
from .validation import validate_command, validate_commands

# Keys that Discord assigns itself; ignored when a client sends them back.
_SERVER_KEYS = {"id", "application_id", "version", "guild_id"}


class CommandRegistry(ServerCore):
    def _scope(self, guild_id: int | None) -> dict[int, AppCommandRecord]:
        if guild_id is not None and guild_id not in self.state.guilds:
            raise errors.missing_access()
        return self.state.commands.setdefault(guild_id, {})

    def _find_scoped(self, guild_id: int | None, command_id: int) -> AppCommandRecord:
        command = self._scope(guild_id).get(command_id)
        if command is None:
            raise errors.unknown_command()
        return command

    def _new_command(
        self, guild_id: int | None, data: dict[str, Any], previous: AppCommandRecord | None
    ) -> AppCommandRecord:
        clean = {k: v for k, v in data.items() if k not in _SERVER_KEYS}
        command_type = int(clean.get("type") or 1)
        if command_type != 1:
            clean["description"] = ""
        unchanged = previous is not None and previous.data == clean
        return AppCommandRecord(
            id=previous.id if previous is not None else self.ids.next(),
            application_id=self.application_id,
            guild_id=guild_id,
            name=clean["name"],
            type=command_type,
            data=clean,
            version=previous.version if unchanged and previous else self.ids.next(),
        )

    def _overwrite_commands(self, guild_id: int | None, payload: Any) -> list[AppCommandRecord]:
        """PUT .../commands: replace the whole set, keeping ids of kept commands."""
        validate_commands(payload)
        scope = self._scope(guild_id)
        by_key = {(c.name, c.type): c for c in scope.values()}
        fresh = [
            self._new_command(
                guild_id, data, by_key.get((data["name"], int(data.get("type") or 1)))
            )
            for data in payload
        ]
        scope.clear()
        scope.update({c.id: c for c in fresh})
        self._changed()
        return fresh

    def _upsert_command(self, guild_id: int | None, data: Any) -> tuple[AppCommandRecord, bool]:
        """POST .../commands: create, or replace the command with the same name/type."""
        if not isinstance(data, dict):
            raise errors.field_error("_", "MODEL_TYPE_CONVERT", "Must be an object.")
        validate_command(data, "_")
        scope = self._scope(guild_id)
        key = (data["name"], int(data.get("type") or 1))
        previous = next((c for c in scope.values() if (c.name, c.type) == key), None)
        command = self._new_command(guild_id, data, previous)
        scope[command.id] = command
        self._changed()
        return command, previous is None

    def _edit_command(
        self, guild_id: int | None, command_id: int, changes: dict[str, Any]
    ) -> AppCommandRecord:
        previous = self._find_scoped(guild_id, command_id)
        data = {**previous.data, **changes, "type": previous.type}
        validate_command(data, "_")
        command = self._new_command(guild_id, data, previous)
        self._scope(guild_id)[command.id] = command
        self._changed()
        return command

    def _delete_command(self, guild_id: int | None, command_id: int) -> None:
        self._find_scoped(guild_id, command_id)
        del self._scope(guild_id)[command_id]
        self._changed()
