"""The warm pool's Prometheus metrics, registered on the manager's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ("PoolMetrics",)

_REFILL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


class PoolMetrics:
    """Size, hits and misses, failed claims, refill latency."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.target = Gauge("kato_warm_pool_target", "WARM_POOL_SIZE in effect.", registry=r)
        self.ready = Gauge(
            "kato_warm_pool_ready", "Started, unassigned processors waiting.", registry=r
        )
        self.claims = Counter(
            "kato_warm_pool_claims",
            "Processor starts asked of the pool: hit (a pooled processor was claimed) or miss "
            "(cold start).",
            ["outcome"],
            registry=r,
        )
        self.claim_failures = Counter(
            "kato_warm_pool_claim_failures",
            "Pooled processors that could not be claimed (dead, taken, refused), by reason.",
            ["reason"],
            registry=r,
        )
        self.refill = Histogram(
            "kato_warm_pool_refill_seconds",
            "From starting a pooled processor to its /health answering.",
            buckets=_REFILL_BUCKETS,
            registry=r,
        )
        self.refill_failures = Counter(
            "kato_warm_pool_refill_failures", "Pooled processors that did not start.", registry=r
        )
