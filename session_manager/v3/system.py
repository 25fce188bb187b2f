"""The non-session routes a v3 client calls (§5): minimal but well-formed, in v3's shapes.

Numbers come from the manager (uptime, v3 session count); what this deployment does not have
(a pattern cache, distributed STM, connection pools of its own) is reported as disabled.
Node-level reads (``/pattern/{id}``, ``/symbols/…``) have no processor of their own to ask:
they answer v3's empty or error shapes (see the README, "Coming from KATO v3").
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import datetime
from typing import Any

from litestar import Request, WebSocket, get, post, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.params import FromPath, FromQuery

from session_manager.v3.errors import V3Error
from session_manager.v3.events import EventHub
from session_manager.v3.facade import V3Sessions
from session_manager.v3.ids import iso_offset, node_key
from session_manager.v3.routes import caller_tenant

__all__ = ("CLASHING_HANDLERS", "SYSTEM_HANDLERS")

AnyRequest = Request[Any, Any, Any]
VERSION = "3.10.1"
"""The v3 version whose API this facade follows."""


def _v3(request: AnyRequest) -> V3Sessions:
    v3: V3Sessions = request.app.state.v3
    return v3


def _uptime(request: AnyRequest) -> float:
    return time.monotonic() - _v3(request).started_monotonic


def _node(request: AnyRequest, node_id: str | None) -> str:
    """v3's node for node-level routes: the query, else ``x-test-id``, ``x-node-id``, default."""
    if node_id:
        return node_id
    test_id = request.headers.get("x-test-id")
    if test_id:
        return f"test_{test_id}"
    return request.headers.get("x-node-id") or "default_node"


def _now() -> str:
    return iso_offset(time.time())


@get("/", include_in_schema=False)
async def root(request: AnyRequest) -> dict[str, Any]:
    """Service identity."""
    return {
        "service": "KATO API",
        "version": VERSION,
        "description": "KATO v3 session API on kato-sessions: a private processor per session",
        "docs": "/docs",
        "health": "/health",
        "status": "running",
        "uptime_seconds": _uptime(request),
        "architecture": "modular",
        "session_support": True,
    }


@get("/health")
async def health(request: AnyRequest) -> dict[str, Any]:
    """Always 200; ``degraded`` when Redis does not answer."""
    v3 = _v3(request)
    issues: list[str] = []
    try:
        active = await v3.count()
    except Exception:
        active, issues = 0, ["session store unavailable"]
    return {
        "status": "degraded" if issues else "healthy",
        "processor_status": "healthy" if not issues else "unknown",
        "service_name": "kato",
        "uptime_seconds": _uptime(request),
        "issues": issues,
        "metrics_collected": 0,
        "last_collection": v3.started_wall,
        "active_sessions": active,
        "timestamp": _now(),
    }


@get("/status")
async def status(request: AnyRequest) -> dict[str, Any]:
    """Sessions known to this deployment (authoritative here: Redis holds them)."""
    v3 = _v3(request)
    active = await v3.count()
    settings = request.app.state.settings
    return {
        "status": "healthy",
        "base_processor_id": "kato",
        "uptime_seconds": _uptime(request),
        "sessions": {
            "total_sessions": active,
            "active_sessions": active,
            "expired_sessions": 0,
            "backend": "redis",
            "redis_url": "embedded" if settings.redis_url is None else "configured",
        },
        "processors": {
            "total_processors": active,
            "max_processors": settings.max_sessions,
            "eviction_ttl_seconds": settings.idle_timeout_s,
            "processors": [],
        },
        "version": VERSION,
    }


@get("/metrics")
async def metrics(request: AnyRequest) -> dict[str, Any]:
    """v3's JSON metrics (the manager's Prometheus text stays at the root ``/metrics``)."""
    active = await _v3(request).count()
    return {
        "timestamp": time.time(),
        "sessions": {
            "total_created": 0,
            "total_deleted": 0,
            "active": active,
            "operations_total": 0,
        },
        "performance": {
            "total_requests": 0,
            "total_errors": 0,
            "error_rate": 0.0,
            "average_response_time": 0.0,
        },
        "resources": {"cpu_percent": 0.0, "memory_percent": 0.0, "disk_percent": 0.0},
        "databases": {},
        "rates": {},
        "processor_manager": {},
        "uptime_seconds": None,
        "active_sessions": None,
        "error": None,
    }


@get("/stats")
async def stats(request: AnyRequest, minutes: FromQuery[int] = 10) -> dict[str, Any]:
    """No time series are kept: an empty one."""
    return {
        "time_range_minutes": minutes,
        "timestamp": time.time(),
        "processor_manager": {},
        "current_status": {"active_sessions": await _v3(request).count()},
        "time_series": {},
        "summary": {},
        "error": None,
    }


@get("/metrics/{name:str}")
async def metric(name: FromPath[str], minutes: FromQuery[int] = 10) -> dict[str, Any]:
    """No time series are kept: every metric has no data (v3's 404)."""
    raise V3Error(404, f"No data available for metric '{name}' in the last {minutes} minutes")


@get("/cache/stats")
async def cache_stats() -> dict[str, Any]:
    """There is no pattern cache: disabled."""
    disabled = {"status": "disabled"}
    return {"cache_performance": disabled, "cache_health": disabled, "timestamp": _now()}


@post("/cache/invalidate", status_code=200)
async def cache_invalidate(session_id: FromQuery[str | None] = None) -> dict[str, Any]:
    """Nothing is cached, so nothing is invalidated."""
    return {
        "status": "disabled",
        "patterns_invalidated": 0,
        "symbols_invalidated": 0,
        "session_id": session_id,
        "reason": "no pattern cache",
        "timestamp": _now(),
    }


@get("/connection-pools")
async def connection_pools() -> dict[str, Any]:
    """Pools are the manager's own (its proxy's): reported healthy, without statistics."""
    return {
        "status": "healthy",
        "health": {},
        "pool_statistics": {},
        "connection_optimization": {},
        "performance_improvements": {},
        "error": None,
        "timestamp": _now(),
    }


@get("/distributed-stm/stats")
async def distributed_stm() -> dict[str, Any]:
    """Each session's STM lives in its own processor: no distributed STM."""
    return {
        "status": "disabled",
        "distributed_stm_enabled": False,
        "performance_stats": {},
        "processor_info": {},
        "expected_improvements": {},
        "reason": "each session has a private processor",
        "error": None,
        "timestamp": _now(),
    }


@get("/concurrency")
async def concurrency(request: AnyRequest) -> dict[str, Any]:
    """Live sessions against ``MAX_SESSIONS``."""
    active = await _v3(request).count()
    limit = request.app.state.settings.max_sessions
    return {
        "status": "healthy",
        "current": active,
        "peak": active,
        "limits": {"max_sessions": limit},
        "configuration": {},
        "recommendations": [],
        "timestamp": _now(),
    }


@get("/pattern/{pattern_id:str}")
async def pattern(
    request: AnyRequest, pattern_id: FromPath[str], node_id: FromQuery[str | None] = None
) -> dict[str, Any]:
    """A node's pattern; read through one of the node's live sessions (200 even when unknown)."""
    tenant = caller_tenant(request)
    node = _node(request, node_id)
    found = await _v3(request).node_pattern(node, pattern_id, tenant.name if tenant else None)
    if found is None:
        answer: dict[str, Any] = {"status": "error", "message": f"Pattern {pattern_id} not found"}
    else:
        answer = {"status": "okay", "pattern": found}
    return {"pattern": answer, "node_id": node_key(node)}


def _deprecated(kind: str) -> Any:
    @get(f"/{kind}")
    async def handler(request: AnyRequest, node_id: FromQuery[str | None] = None) -> dict[str, Any]:
        return {
            kind.replace("-", "_"): {},
            "warning": f"Deprecated: use /sessions/{{session_id}}/{kind}",
            "node_id": node_key(_node(request, node_id)),
        }

    handler.fn.__doc__ = f"Deprecated node-level ``/{kind}``: empty, as v3 answers it."
    return handler


@get(["/symbols/affinity", "/symbols/stats"])
async def symbols(request: AnyRequest, node_id: FromQuery[str | None] = None) -> dict[str, Any]:
    """Symbol statistics are not exposed by this processor: empty."""
    return {"node_id": node_key(_node(request, node_id)), "symbols": {}, "total_symbols": 0}


@get("/symbols/{symbol:str}/affinity")
async def symbol_affinity(
    request: AnyRequest, symbol: FromPath[str], node_id: FromQuery[str | None] = None
) -> dict[str, Any]:
    """Symbol affinity is not exposed by this processor: empty."""
    return {"node_id": node_key(_node(request, node_id)), "symbol": symbol, "affinity": {}}


@websocket("/ws/events")
async def events_socket(socket: WebSocket[Any, Any, Any]) -> None:
    """``state.snapshot`` on connect, then ``session.created``/``session.destroyed``."""
    try:
        tenant = caller_tenant(socket)
    except V3Error as exc:  # refused as the manager refuses sockets: accepted, closed 4000+status
        await socket.accept()
        await socket.close(code=4000 + exc.status, reason=str(exc.detail)[:120])
        return
    v3 = socket.app.state.v3
    hub: EventHub = v3.events
    queue = hub.listen(tenant.name if tenant is not None else None)
    try:
        await socket.accept()
        await socket.send_json(
            {
                "event_type": "state.snapshot",
                # v3's quirk: server-local time without an offset.
                "timestamp": datetime.now().isoformat(),
                "data": {"active_sessions": await v3.count(), "system_status": "healthy"},
            }
        )
        reader = asyncio.create_task(_answer_pings(socket))
        try:
            while not reader.done():
                getter = asyncio.create_task(queue.get())
                done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    await socket.send_json(getter.result())
                else:
                    getter.cancel()
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
                await reader
    except WebSocketDisconnect:
        pass
    finally:
        hub.leave(queue)


async def _answer_pings(socket: WebSocket[Any, Any, Any]) -> None:
    """``ping`` gets ``pong``; any other text is ignored; returns when the client leaves."""
    while True:
        try:
            message = await socket.receive_text()
        except WebSocketDisconnect:
            return
        if message == "ping":
            await socket.send_text("pong")


SYSTEM_HANDLERS = (
    status,
    stats,
    metric,
    cache_stats,
    cache_invalidate,
    connection_pools,
    distributed_stm,
    concurrency,
    pattern,
    _deprecated("percept-data"),
    _deprecated("cognition-data"),
    symbols,
    symbol_affinity,
    events_socket,
)
"""Served wherever the v3 API is mounted."""
CLASHING_HANDLERS = (root, health, metrics)
"""Served only under a prefix: at the root, ``/``, ``/health`` and ``/metrics`` are the
manager's."""
