"""Calls into static processors: sticky (one processor per id), pooled, health-gated, measured."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import msgspec
from prometheus_client import CollectorRegistry, Counter, Histogram

from session_manager.errors import (
    ProcessorTimeout,
    ProcessorUnavailable,
    ProcessorUnhealthy,
    SessionNotFound,
)
from session_manager.gateway.health import HealthMonitor, ProcessorHealth
from session_manager.gateway.registry import StaticProcessor
from session_manager.processor_client import ProcessorClient

__all__ = ("Gateway", "ProcessorReply")


class ProcessorReply(msgspec.Struct, frozen=True):
    """A processor's answer: status and decoded JSON body."""

    status: int
    body: Any


class Gateway:
    """The registered processors, their health, and calls through the manager's client.

    The ``ProcessorClient`` is the app's and is closed by the app, not here.
    """

    def __init__(
        self,
        processors: Sequence[StaticProcessor],
        *,
        client: ProcessorClient,
        registry: CollectorRegistry,
        health_interval_s: float = 5.0,
        health_timeout_s: float = 2.0,
    ) -> None:
        self.processors = {p.id: p for p in processors}
        self._locks = {p.id: asyncio.Lock() for p in processors}
        self._client = client
        self.health = HealthMonitor(
            processors, client, interval_s=health_interval_s, timeout_s=health_timeout_s
        )
        self._requests = Counter(
            "kato_gateway_requests",
            "Requests to static processors by processor and status.",
            ["processor_id", "status"],
            registry=registry,
        )
        self._latency = Histogram(
            "kato_gateway_request_seconds",
            "Latency of requests to static processors.",
            ["processor_id"],
            registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
        )

    async def start(self) -> None:
        """First health round, then the timer."""
        await self.health.start()

    async def close(self) -> None:
        """Stop checking."""
        await self.health.stop()

    def __contains__(self, processor_id: object) -> bool:
        return processor_id in self.processors

    def endpoint_for(self, processor_id: str) -> str | None:
        """URL for ``/session/{processor_id}/…``; None if not registered; 503 if unhealthy."""
        if processor_id not in self.processors:
            return None
        return self.route(processor_id).url

    def lock(self, processor_id: str) -> asyncio.Lock:
        """Serialises read-modify-write sequences on one processor within this manager."""
        self.route(processor_id)
        return self._locks[processor_id]

    def status(self) -> list[ProcessorHealth]:
        """Every processor with its health, for the admin API."""
        return self.health.all()

    def route(self, processor_id: str) -> StaticProcessor:
        """The processor for this id, or a clear 404 / an immediate 503 when it is unhealthy."""
        processor = self.processors.get(processor_id)
        if processor is None:
            raise SessionNotFound(
                f"no processor {processor_id!r} is registered", processor_id=processor_id
            )
        health = self.health.get(processor_id)
        if health is not None and not health.healthy:
            raise ProcessorUnhealthy(
                f"processor {processor_id!r} is unhealthy",
                processor_id=processor_id,
                reason=health.error,
                healthy=self.health.healthy_ids(),
            )
        return processor

    async def call(
        self,
        processor_id: str,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
    ) -> ProcessorReply:
        """One request to the processor's ``path``; transport failures mark it unhealthy."""
        processor = self.route(processor_id)
        started = time.perf_counter()
        status = "error"
        try:
            reply = await self._client.exchange(
                method, processor.url, path, json=json, params=params
            )
            status = str(reply.status)
        except ProcessorTimeout as exc:
            exc.details["processor_id"] = processor_id
            raise
        except ProcessorUnavailable as exc:
            self.health.mark_failed(processor_id, exc.details.get("error", exc.message))
            exc.details.update(processor_id=processor_id, healthy=self.health.healthy_ids())
            raise
        finally:
            self._requests.labels(processor_id, status).inc()
            self._latency.labels(processor_id).observe(time.perf_counter() - started)
        try:
            return ProcessorReply(reply.status, reply.json())
        except ProcessorUnavailable as exc:  # not JSON: the processor answered, it is not down
            exc.details["processor_id"] = processor_id
            raise
