"""What `!config memory` shows and changes."""

from __future__ import annotations

import hark

SERVER_ONLY = ("global", "server")


class MemorySettings(hark.Settings):
    enabled: bool = hark.setting(
        True, description="learn and recall facts here (a server, or one channel)"
    )
    recall_tokens: int = hark.setting(
        400,
        ge=50,
        le=4000,
        scopes=SERVER_ONLY,
        description="how much of the prompt remembered facts may take, in tokens",
    )
    batch_exchanges: int = hark.setting(
        6,
        ge=1,
        le=50,
        scopes=SERVER_ONLY,
        description="exchanges collected before facts are extracted from them",
    )
    batch_seconds: float = hark.setting(
        120.0,
        ge=1.0,
        le=3600.0,
        scopes=SERVER_ONLY,
        description="extract at the latest this many seconds after the first exchange waits",
    )
    extractions_per_hour: int = hark.setting(
        12,
        ge=0,
        le=1000,
        scopes=SERVER_ONLY,
        description="cost cap: calls to the LLM for extraction per hour (0: learn nothing)",
    )
    max_facts: int = hark.setting(
        2000,
        ge=1,
        le=100_000,
        scopes=SERVER_ONLY,
        description="facts kept per server; beyond it the least important and oldest go",
    )
