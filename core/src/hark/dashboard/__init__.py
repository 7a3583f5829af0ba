"""The operator dashboard: a read-only web view of the running bot (docs/dashboard.md).

Served by ``bot run`` from its own process when ``HARK_DASHBOARD`` or a
``[dashboard]`` table in bot.toml asks for it; off by default. Part of the Discord
host layer: it reads the bot, its plugins and the core's turn metrics store
(:mod:`hark.metrics`), and changes nothing.
"""

from hark.dashboard.app import Dashboard

__all__ = ["Dashboard"]
