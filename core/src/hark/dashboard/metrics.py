"""``/metrics``: the dashboard's data in Prometheus' text format (prometheus-client).

A registry of the dashboard's own (never the library's global one): a collector
that reads the bot and its turn metrics store at scrape time, plus the library's
process collector (CPU, memory, open files). Labels hold ids and names, never a
message or a secret.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from hark.dashboard import data

CONTENT_TYPE = CONTENT_TYPE_LATEST  # the text format, version 0.0.4


class HarkCollector(Collector):
    def __init__(self, bot: Any, dashboard: Any) -> None:
        self.bot = bot
        self.dashboard = dashboard

    def collect(self) -> Iterator[Metric]:
        bot, metrics = self.bot, self.bot.metrics
        overview = data.overview(bot, self.dashboard)
        yield GaugeMetricFamily(
            "hark_connected", "1 while connected to Discord's gateway", value=overview["connected"]
        )
        latency = GaugeMetricFamily(
            "hark_gateway_latency_seconds", "Gateway heartbeat latency (NaN: unknown)"
        )
        latency.add_metric([], overview["gateway_latency_s"] or float("nan"))
        yield latency
        yield GaugeMetricFamily("hark_guilds", "Servers the bot is in", value=len(bot.guilds))
        yield GaugeMetricFamily(
            "hark_uptime_seconds", "Seconds since the dashboard started", value=overview["uptime_s"]
        )
        lag = GaugeMetricFamily("hark_event_loop_lag_seconds", "Latest measured event-loop lag")
        lag.add_metric([], overview["event_loop_lag_s"] or 0.0)
        yield lag
        yield GaugeMetricFamily(
            "hark_voice_sessions", "Voice sessions open", value=overview["voice_sessions"]
        )

        turns = CounterMetricFamily(
            "hark_turns", "Turns since start by kind and outcome", labels=["kind", "outcome"]
        )
        for (kind, outcome), count in sorted(metrics.turn_counts.items()):
            turns.add_metric([kind, outcome], count)
        yield turns
        first = SummaryMetricFamily(
            "hark_turn_first_token_seconds",
            "Time to the first token over the recent turns (the store's ring)",
            labels=["kind"],
        )
        totals = SummaryMetricFamily(
            "hark_turn_total_seconds", "Whole turn time over the recent turns", labels=["kind"]
        )
        for kind in sorted({t.kind for t in metrics.turns}):
            recent = [t for t in metrics.turns if t.kind == kind]
            firsts = [t.first_token_s for t in recent if t.first_token_s is not None]
            whole = [t.total_s for t in recent if t.total_s is not None]
            first.add_metric([kind], len(firsts), sum(firsts))
            totals.add_metric([kind], len(whole), sum(whole))
        yield first
        yield totals
        events = CounterMetricFamily(
            "hark_events", "Events recorded since start by level", labels=["level"]
        )
        for level, count in sorted(metrics.event_counts.items()):
            events.add_metric([level], count)
        yield events

        plugins = GaugeMetricFamily(
            "hark_plugin_loaded",
            "1 if the plugin loaded, 0 if it failed or is blocked",
            labels=["plugin", "status"],
        )
        for info in sorted(bot.control.manager.plugins.values(), key=lambda i: i.id):
            plugins.add_metric([info.id, info.status], 1.0 if info.loaded else 0.0)
        yield plugins

        labels = ["provider", "capability"]
        calls = CounterMetricFamily("hark_provider_calls", "Provider calls", labels=labels)
        failures = CounterMetricFamily("hark_provider_failures", "Failed calls", labels=labels)
        retries = CounterMetricFamily("hark_provider_retries", "Retried calls", labels=labels)
        timeouts = CounterMetricFamily("hark_provider_timeouts", "Timed-out calls", labels=labels)
        latency_q = GaugeMetricFamily(
            "hark_provider_latency_seconds",
            "Provider call latency percentiles over recent calls",
            labels=[*labels, "quantile"],
        )
        for p in data.plugins(bot)["providers"]:
            key = [p["id"], p["capability"]]
            calls.add_metric(key, p["calls"])
            failures.add_metric(key, p["failures"])
            retries.add_metric(key, p["retries"])
            timeouts.add_metric(key, p["timeouts"])
            for q, field in (("0.5", "p50_s"), ("0.95", "p95_s")):
                if p[field] is not None:
                    latency_q.add_metric([*key, q], p[field])
        yield from (calls, failures, retries, timeouts, latency_q)


def build_registry(bot: Any, dashboard: Any) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HarkCollector(bot, dashboard))
    ProcessCollector(namespace="hark", registry=registry)
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
