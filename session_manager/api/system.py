"""``/health`` (liveness), ``/ready`` (Redis and backend reachable) and ``/metrics``."""

from __future__ import annotations

import contextlib
from typing import Any

import msgspec
from litestar import Request, Response, get

from session_manager.backends.base import processors_by_node
from session_manager.errors import BackendUnavailable, StoreUnavailable
from session_manager.metrics import CONTENT_TYPE, Metrics
from session_manager.store import SessionStore

__all__ = ("SYSTEM_HANDLERS",)


class Health(msgspec.Struct, frozen=True):
    """Liveness and readiness replies."""

    status: str


@get("/health", tags=["system"])
async def health(request: Request[Any, Any, Any]) -> Health:
    """The process answers; 503 while its own embedded Redis is down (being restarted).

    An external Redis (``REDIS_URL``) is not this process's health: ``/ready`` reports it.
    """
    embedded = request.app.state.redis.embedded
    if embedded is not None and not embedded.up:
        raise StoreUnavailable("the embedded Redis is down; it is being restarted")
    return Health("ok")


@get("/ready", tags=["system"])
async def ready(request: Request[Any, Any, Any]) -> Health:
    """200 when Redis answers a PING and the backend is reachable, else 503 naming which."""
    store: SessionStore = request.app.state.store
    await store.ping()
    try:
        reachable = await request.app.state.backend.ping()
    except Exception as exc:
        raise BackendUnavailable("the backend cannot be reached", error=str(exc)) from exc
    if not reachable:
        raise BackendUnavailable("the backend cannot be reached")
    return Health("ready")


@get("/metrics", tags=["system"])
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Prometheus text format; session gauges are read from Redis at each scrape."""
    store: SessionStore = request.app.state.store
    registry: Metrics = request.app.state.metrics
    try:
        counts = await store.counts()
    except StoreUnavailable:
        counts = {}
    with contextlib.suppress(Exception):  # an engine hiccup must not fail the scrape
        registry.set_nodes(await processors_by_node(request.app.state.backend))
    body = registry.render(counts, request.app.state.settings.max_sessions)
    return Response(body, media_type=CONTENT_TYPE)


SYSTEM_HANDLERS = (health, ready, metrics)
