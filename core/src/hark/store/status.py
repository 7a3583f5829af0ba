"""What each running bot process reports about its plugins, for `bot plugins`.

Some problems exist only while the bot runs: an MCP server that died, a toolbox
whose backend is unreachable. The bot writes them here every
:data:`PUBLISH_INTERVAL` seconds (a heartbeat row even when all is well), so the
CLI, another process, can show them; rows older than :data:`FRESH_FOR` belong to a
process that is gone and are not shown. A clean shutdown removes its rows.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass

from hark.store.database import Database

PUBLISH_INTERVAL = 30.0
FRESH_FOR = 3 * PUBLISH_INTERVAL
# The process's own row: it ran at updated_at, with or without problems.
HEARTBEAT = ""


def process_name() -> str:
    """This process, as other processes see it: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class ProcessReport:
    process: str
    updated_at: float
    problems: dict[str, str]  # plugin id -> its problem line


class RuntimeStatus:
    def __init__(self, db: Database, process: str | None = None) -> None:
        self.db = db
        self.process = process or process_name()

    async def publish(self, problems: Mapping[str, str]) -> None:
        """Replace this process's report with ``problems`` (plugin id -> line)."""
        now = time.time()
        rows = [(self.process, HEARTBEAT, "", now)]
        rows += [(self.process, plugin, line, now) for plugin, line in problems.items()]
        async with self.db.transaction() as tx:
            await tx.execute("DELETE FROM runtime_status WHERE process = ?", (self.process,))
            await tx.executemany(
                "INSERT INTO runtime_status (process, plugin_id, line, updated_at)"
                " VALUES (?, ?, ?, ?)",
                rows,
            )

    async def clear(self) -> None:
        await self.db.execute("DELETE FROM runtime_status WHERE process = ?", (self.process,))

    async def reports(self, *, now: float | None = None) -> list[ProcessReport]:
        """The reports of processes that published within :data:`FRESH_FOR`."""
        since = (time.time() if now is None else now) - FRESH_FOR
        rows = await self.db.fetchall(
            "SELECT process, plugin_id, line, updated_at FROM runtime_status"
            " WHERE updated_at >= ? ORDER BY process, plugin_id",
            (since,),
        )
        reports: dict[str, ProcessReport] = {}
        for process, plugin, line, updated_at in rows:
            report = reports.setdefault(process, ProcessReport(process, updated_at, {}))
            if plugin != HEARTBEAT:
                report.problems[plugin] = line
        return list(reports.values())
