"""Prometheus metrics: one ``CollectorRegistry`` per app, so apps and tests never share counts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

__all__ = ("CONTENT_TYPE", "Metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_START_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0)
_PROXY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


class LaneCounts(Protocol):
    """What the proxy's lane counts (``api.proxy_lane.ProxyLane``)."""

    answered: int
    handed_over: int


class _LaneCollector(Collector):
    """The lane's plain counts, read at scrape: nothing is paid per request for them."""

    def __init__(self, lane: LaneCounts) -> None:
        self._lane = lane

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "kato_proxy_lane_requests",
            "Proxied requests sent by the lane, by how they were answered.",
            labels=["outcome"],
        )
        family.add_metric(["answered"], self._lane.answered)
        family.add_metric(["handed_over"], self._lane.handed_over)
        yield family


class Metrics:
    """Every metric the manager exports; built in the lifespan, kept on ``app.state.metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sessions = Gauge(
            "kato_sessions",
            "Live sessions by status (read from Redis at scrape).",
            ["status"],
            registry=r,
        )
        self.capacity_left = Gauge(
            "kato_capacity_left",
            "Sessions that can still be created (MAX_SESSIONS - live).",
            registry=r,
        )
        self.sessions_created = Counter(
            "kato_sessions_created", "Sessions created (capacity reserved).", registry=r
        )
        self.capacity_rejections = Counter(
            "kato_capacity_rejections",
            "Creates refused with 429, by limit.",
            ["limit"],
            registry=r,
        )
        self.start_duration = Histogram(
            "kato_session_start_seconds",
            "Processor start until healthy, by outcome.",
            ["outcome"],
            buckets=_START_BUCKETS,
            registry=r,
        )
        self.stop_duration = Histogram(
            "kato_session_stop_seconds", "Processor stop.", buckets=_START_BUCKETS, registry=r
        )
        self.proxy_requests = Counter(
            "kato_proxy_requests",
            "Proxied HTTP requests by response status.",
            ["status"],
            registry=r,
        )
        self.proxy_latency = Histogram(
            "kato_proxy_latency_seconds",
            "Proxied request until the processor's headers.",
            buckets=_PROXY_BUCKETS,
            registry=r,
        )
        self.backend_errors = Counter(
            "kato_backend_errors",
            "Backend operations that failed.",
            ["backend", "op"],
            registry=r,
        )
        self.reaped = Counter("kato_reaped", "Sessions reaped, by reason.", ["reason"], registry=r)
        self.hibernations = Counter("kato_hibernations", "Sessions hibernated.", registry=r)
        self.checkpoints = Counter(
            "kato_checkpoints", "Running sessions checkpointed (journal trimmed).", registry=r
        )
        self.recoveries = Counter(
            "kato_recoveries",
            "Lost processors replaced from checkpoint and journal, by who noticed.",
            ["by"],
            registry=r,
        )
        self.processor_out_of_memory = Counter(
            "kato_processor_out_of_memory",
            "Processors that exited at their memory limit (PROCESSOR_MEMORY_LIMIT).",
            registry=r,
        )
        self.restores = Counter(
            "kato_restores",
            "Hibernated or lost sessions restored into a new processor.",
            registry=r,
        )
        self.restore_duration = Histogram(
            "kato_restore_seconds",
            "Restore: processor start plus state upload.",
            buckets=_START_BUCKETS,
            registry=r,
        )
        self.start_queue_waiting = Gauge(
            "kato_start_queue_waiting",
            "Restores and recoveries waiting here for a start slot (summed over replicas: the "
            "deployment's line).",
            registry=r,
        )
        self.start_wait = Histogram(
            "kato_start_wait_seconds",
            "Time a restore or recovery waited in line for a start slot, by kind and outcome "
            "(claimed, moved: started elsewhere or ended, timeout: answered 503 STARTS_BUSY, "
            "abandoned: cancelled or Redis failed).",
            ["kind", "outcome"],
            buckets=_START_BUCKETS,
            registry=r,
        )
        self.orphans_removed = Counter(
            "kato_orphans_removed",
            "Processors with this manager's label but no record.",
            registry=r,
        )

        self.processors_by_node = Gauge(
            "kato_processors",
            "Running processors per node (swarm: node hostname; read from the engine at scrape).",
            ["node"],
            registry=r,
        )

    def watch_lane(self, lane: LaneCounts) -> None:
        """Export the proxy lane's counts (``kato_proxy_lane_requests_total``)."""
        self.registry.register(_LaneCollector(lane))

    def set_nodes(self, by_node: dict[str, int]) -> None:
        """``kato_processors{node}`` from ``by_node``; nodes no longer running any disappear."""
        self.processors_by_node.clear()
        for node, count in by_node.items():
            self.processors_by_node.labels(node=node).set(count)

    def render(self, counts: dict[str, int], max_sessions: int) -> bytes:
        """The text exposition, with the session gauges set from ``counts`` (if any) first."""
        if not counts:
            return generate_latest(self.registry)
        for status, count in counts.items():
            if status not in ("total", "starts"):
                self.sessions.labels(status=status).set(count)
        self.capacity_left.set(max(0, max_sessions - counts.get("total", 0)))
        return generate_latest(self.registry)
