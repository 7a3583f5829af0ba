"""A running bot reports its toolboxes' problems for `bot plugins` (hark.store.status)."""

from __future__ import annotations

import asyncio

import hark
from hark.store import RuntimeStatus, SQLiteDatabase
from hark.testing.harness import BotHarness


class DownBox:
    """A toolbox whose backend is down: no tools, and a status line saying so."""

    def tools_for(self, guild_id):
        return []

    def status(self):
        return "search: reconnecting in 4 s (connection refused)"


async def test_the_bot_reports_toolbox_problems_while_it_runs_and_clears_them_at_exit(tmp_path):
    plugin = hark.Plugin(description="Search", tools=[DownBox()])
    async with BotHarness(tmp_path, plugins={"search": plugin}) as h:
        status = h.bot.runtime.status
        async with asyncio.timeout(10):
            while not (reports := await status.reports()):
                await asyncio.sleep(0.05)
        (report,) = reports
        assert report.process == status.process
        assert report.problems == {"search": "search: reconnecting in 4 s (connection refused)"}
        path = h.bot.runtime.config.database_path
    db = SQLiteDatabase(path)
    await db.open()
    try:
        assert await RuntimeStatus(db).reports() == []  # a clean exit leaves no report
    finally:
        await db.close()
