"""The v3 session routes (§3 of the v3 reference): thin handlers over ``V3Sessions``."""

from __future__ import annotations

import time
from typing import Any

from litestar import Request, Response, delete, get, post
from litestar.connection import ASGIConnection
from litestar.params import FromPath

from session_manager.models import Tenant
from session_manager.sessions.tokens import bearer_token
from session_manager.store.v3 import V3Record
from session_manager.tenants import CREATE, Tenants
from session_manager.v3 import config as v3config
from session_manager.v3.errors import BodyInvalid, DetailNotFound, V3Error, decode_body
from session_manager.v3.facade import V3Sessions
from session_manager.v3.ids import iso_micro, iso_offset, unique_id
from session_manager.v3.schemas import CreateSession, Observation, ObserveSequence, SessionResponse

__all__ = ("SESSION_HANDLERS", "caller_tenant")

AnyRequest = Request[Any, Any, Any]
_SESSION = "/sessions/{session_id:str}"


def _v3(request: AnyRequest) -> V3Sessions:
    v3: V3Sessions = request.app.state.v3
    return v3


def caller_tenant(request: ASGIConnection[Any, Any, Any, Any]) -> Tenant | None:
    """The caller's tenant under ``KATO_V3_AUTH=key`` (``X-API-Key`` or bearer); else ``None``."""
    if request.app.state.settings.effective_kato_v3_auth == "none":
        return None
    tenants: Tenants = request.app.state.tenants
    token = request.headers.get("x-api-key") or bearer_token(request.headers.get("authorization"))
    if not token:
        raise V3Error(401, "Missing API key: send it as X-API-Key (or Authorization: Bearer)")
    key = tenants.find(token)
    if key is None:
        raise V3Error(401, "Invalid API key")
    if not key.allows(CREATE):
        raise V3Error(403, f"This API key may not use sessions (scope {CREATE})")
    return key.tenant


def _tenant_name(request: AnyRequest) -> str | None:
    tenant = caller_tenant(request)
    return tenant.name if tenant is not None else None


def _headers(session_id: str) -> dict[str, str]:
    return {"X-Session-ID": session_id}


def _session_response(
    session_id: str, record: V3Record, deadline_ms: int, ttl_seconds: int
) -> SessionResponse:
    return SessionResponse(
        session_id=session_id,
        node_id=record.node_id,
        created_at=iso_micro(record.created_at_us),
        expires_at=iso_micro(deadline_ms * 1000),
        ttl_seconds=ttl_seconds,
        metadata=record.metadata,
        session_config=v3config.effective(record.config),
    )


@post("/sessions", status_code=200)
async def create_session(request: AnyRequest) -> Response[SessionResponse]:
    """Create a session on ``node_id``: a private processor sharing the node's knowledge."""
    tenant = caller_tenant(request)
    body: CreateSession = decode_body(await request.body(), CreateSession)
    session_id, record, deadline = await _v3(request).create(
        body.node_id,
        tenant=tenant,
        config=body.config,
        metadata=body.metadata,
        ttl_seconds=body.ttl_seconds,
    )
    reply = _session_response(session_id, record, deadline, body.ttl_seconds or 3600)
    _v3(request).events.publish(
        tenant.name if tenant is not None else "default",
        "session.created",
        {
            "session_id": session_id,
            "node_id": body.node_id,
            "created_at": iso_offset(record.created_at_us / 1_000_000),
        },
    )
    echoed = request.headers.get("x-session-id") or request.cookies.get("session_id")
    return Response(reply, headers={"X-Session-ID": echoed} if echoed else None)


@get("/sessions/count")
async def session_count(request: AnyRequest) -> dict[str, int]:
    """Live v3 sessions (those whose deadline has not passed)."""
    caller_tenant(request)
    return {"active_session_count": await _v3(request).count()}


@get(_SESSION)
async def read_session(request: AnyRequest, session_id: FromPath[str]) -> SessionResponse:
    """The session, its deadline moved (auto-extend); ``ttl_seconds`` is what is left."""
    v3 = _v3(request)
    found = await v3.find(session_id, _tenant_name(request))
    if found is None:
        raise DetailNotFound(session_id)
    record, _ = found
    deadline = await v3.extend(session_id, record.ttl_seconds)
    left = max(0, (deadline - v3.now_ms()) // 1000)
    return _session_response(session_id, record, deadline, min(left, record.ttl_seconds - 1))


@delete(_SESSION, status_code=200)
async def delete_session(request: AnyRequest, session_id: FromPath[str]) -> Response[Any]:
    """End the session: its processor stops; the node's knowledge stays."""
    v3 = _v3(request)
    record = await v3.gate(session_id, _tenant_name(request))
    await v3.end(session_id)
    v3.events.publish(
        record.tenant,
        "session.destroyed",
        {
            "session_id": session_id,
            "destroyed_at": iso_offset(time.time()),
            "reason": "explicit_delete",
        },
    )
    return Response({"status": "deleted", "session_id": session_id}, headers=_headers(session_id))


@get(f"{_SESSION}/exists")
async def session_exists(request: AnyRequest, session_id: FromPath[str]) -> dict[str, Any]:
    """Whether the session lives; never extends it, never 404."""
    caller_tenant(request)
    exists, expired = await _v3(request).exists(session_id)
    return {"exists": exists, "expired": expired, "session_id": session_id}


@post(f"{_SESSION}/extend", status_code=200)
async def extend_session(request: AnyRequest, session_id: FromPath[str]) -> Response[Any]:
    """Deadline = now + ``?ttl_seconds`` (default 3600); the session's TTL stays."""
    raw = request.query_params.get("ttl_seconds", "3600")
    try:
        ttl = int(raw)
    except ValueError:
        raise BodyInvalid(
            [
                {
                    "type": "int_parsing",
                    "loc": ["query", "ttl_seconds"],
                    "msg": "Input should be a valid integer, unable to parse string as an integer",
                    "input": raw,
                }
            ]
        ) from None
    v3 = _v3(request)
    await v3.gate(session_id, _tenant_name(request))
    await v3.extend(session_id, ttl)
    body = {"status": "extended", "session_id": session_id, "ttl_seconds": ttl}
    return Response(body, headers=_headers(session_id))


@get(f"{_SESSION}/config")
async def read_config(request: AnyRequest, session_id: FromPath[str]) -> Response[Any]:
    """The effective configuration (22 keys, plus the optional ones set)."""
    record = await _v3(request).gate(session_id, _tenant_name(request))
    body = {"session_id": session_id, "config": v3config.effective(record.config)}
    return Response(body, headers=_headers(session_id))


@post(f"{_SESSION}/config", status_code=200)
async def update_config(request: AnyRequest, session_id: FromPath[str]) -> Response[Any]:
    """Validate and apply an update, all or nothing; classic genes reach the processor live."""
    v3 = _v3(request)
    record = await v3.gate(session_id, _tenant_name(request))
    body = decode_body(await request.body(), dict[str, Any])
    update = v3config.update_of(body)
    errors = v3config.config_errors(update)
    if errors:
        detail = {"error": "Configuration validation failed", "validation_errors": errors}
        raise V3Error(400, detail)
    overrides = v3config.update_changes(record.config, update)
    genes = v3config.genes_of(overrides, updating=True)
    if genes:
        await v3.call(session_id, "POST", "/genes/update", {"genes": genes})
    await v3.save_config(session_id, record, overrides)
    reply = {"status": "okay", "message": "Configuration updated", "session_id": session_id}
    return Response(reply, headers=_headers(session_id))


@post(f"{_SESSION}/observe", status_code=200)
async def observe(request: AnyRequest, session_id: FromPath[str]) -> Response[Any]:
    """One observation; ``time`` counts every call, ``unique_id`` is the server's."""
    v3 = _v3(request)
    record = await v3.gate(session_id, _tenant_name(request))
    data: Observation = decode_body(await request.body(), Observation)
    await v3.synced(session_id, record)
    item = {
        "strings": data.strings,
        "vectors": data.vectors,
        "emotives": data.emotives,
        "unique_id": unique_id("obs"),
    }
    reply = await v3.call(
        session_id, "POST", "/observe-sequence", {"observations": [item], "details": True}
    )
    result, details = reply.body["results"][0], reply.body["details"]
    if details["learned_patterns"]:
        await v3.changed(session_id, record)
    body = {
        "status": "okay",
        "session_id": session_id,
        "processor_id": record.node_id,
        "stm_length": details["final_stm_length"],
        "time": result["time"],
        "unique_id": result["unique_id"],
        "auto_learned_pattern": result["auto_learned_pattern"],
    }
    return Response(body, headers=_headers(session_id))


@post(f"{_SESSION}/observe-sequence", status_code=200)
async def observe_sequence(request: AnyRequest, session_id: FromPath[str]) -> Response[Any]:
    """Observations in order, with v3's learn and clear options; one processor call."""
    v3 = _v3(request)
    record = await v3.gate(session_id, _tenant_name(request))
    data: ObserveSequence = decode_body(await request.body(), ObserveSequence)
    if not data.observations:
        stm = await v3.call(session_id, "GET", "/stm")
        length = len(stm.body["stm"])
        return Response(
            _sequence_body(record, data, [], length, length, [], None),
            headers=_headers(session_id),
        )
    await v3.synced(session_id, record)
    items = [
        {
            "strings": o.strings,
            "vectors": o.vectors,
            "emotives": o.emotives,
            "unique_id": o.unique_id or unique_id("seq-obs"),
        }
        for o in data.observations
    ]
    reply = await v3.call(
        session_id,
        "POST",
        "/observe-sequence",
        {
            "observations": items,
            "learn_after_each": data.learn_after_each,
            "learn_at_end": data.learn_at_end,
            "clear_stm_between": data.clear_stm_between,
            "details": True,
        },
    )
    details = reply.body["details"]
    if details["learned_patterns"]:
        await v3.changed(session_id, record)
    results = [
        {
            "status": "okay",
            "sequence_position": i,
            "stm_length": details["stm_lengths"][i],
            "time": r["time"],
            "unique_id": r["unique_id"],
            "auto_learned_pattern": r["auto_learned_pattern"],
        }
        for i, r in enumerate(reply.body["results"])
    ]
    body = _sequence_body(
        record,
        data,
        results,
        details["initial_stm_length"],
        details["final_stm_length"],
        details["learned_patterns"],
        details["final_learned_pattern"],
    )
    return Response(body, headers=_headers(session_id))


def _sequence_body(
    record: V3Record,
    data: ObserveSequence,
    results: list[dict[str, Any]],
    initial: int,
    final: int,
    learned: list[str],
    final_pattern: str | None,
) -> dict[str, Any]:
    return {
        "status": "completed",
        "processor_id": record.node_id,
        "observations_processed": len(data.observations),
        "initial_stm_length": initial,
        "final_stm_length": final,
        "results": results,
        "auto_learned_patterns": learned,
        "final_learned_pattern": final_pattern,
        "isolated": data.clear_stm_between,
    }


@get(f"{_SESSION}/stm")
async def read_stm(request: AnyRequest, session_id: FromPath[str]) -> Response[Any]:
    """The session's short-term memory."""
    v3 = _v3(request)
    await v3.gate(session_id, _tenant_name(request))
    stm = (await v3.call(session_id, "GET", "/stm")).body["stm"]
    body = {"stm": stm, "session_id": session_id, "length": len(stm)}
    return Response(body, headers=_headers(session_id))


@post(f"{_SESSION}/learn", status_code=200)
async def learn(request: AnyRequest, session_id: FromPath[str]) -> Response[Any]:
    """Learn STM into the node's knowledge base; an empty STM is v3's 400."""
    v3 = _v3(request)
    record = await v3.gate(session_id, _tenant_name(request))
    status = (await v3.call(session_id, "GET", "/status")).body
    if status["stm_length"] == 0:
        raise V3Error(400, "Cannot learn from empty STM")
    await v3.synced(session_id, record)
    name = (await v3.call(session_id, "POST", "/learn")).body["pattern_name"]
    if name:
        await v3.changed(session_id, record)
    body = {
        "status": "learned",
        "pattern_name": name,
        "session_id": session_id,
        "processor_id": None,
        "message": f"Learned pattern {name} from 0 events",
    }
    return Response(body, headers=_headers(session_id))


@post(f"{_SESSION}/clear-stm", status_code=200)
async def clear_stm(request: AnyRequest, session_id: FromPath[str]) -> Response[Any]:
    """Empty the session's STM and accumulators; the node's knowledge stays."""
    v3 = _v3(request)
    await v3.gate(session_id, _tenant_name(request))
    await v3.call(session_id, "POST", "/clear-stm")
    return Response({"status": "cleared", "session_id": session_id}, headers=_headers(session_id))


@post(f"{_SESSION}/clear-all", status_code=200)
async def clear_all(request: AnyRequest, session_id: FromPath[str]) -> Response[Any]:
    """Clear the session and wipe the node's knowledge base (every session of the node)."""
    v3 = _v3(request)
    record = await v3.gate(session_id, _tenant_name(request))
    await v3.call(session_id, "POST", "/clear-all")
    await v3.changed(session_id, record)
    body = {"status": "cleared", "session_id": session_id, "scope": "all"}
    return Response(body, headers=_headers(session_id))


@get(f"{_SESSION}/predictions")
async def predictions(request: AnyRequest, session_id: FromPath[str]) -> Response[Any]:
    """The predictions of the session's latest observation."""
    v3 = _v3(request)
    record = await v3.gate(session_id, _tenant_name(request))
    await v3.synced(session_id, record)
    found = (await v3.call(session_id, "GET", "/predictions")).body["predictions"]
    body = {
        "predictions": found,
        "future_potentials": [],
        "session_id": session_id,
        "count": len(found),
        "processor_id": None,
        "time": None,
        "unique_id": None,
    }
    return Response(body, headers=_headers(session_id))


@post(f"{_SESSION}/finalize-training", status_code=200)
async def finalize_training(request: AnyRequest, session_id: FromPath[str]) -> Response[Any]:
    """Idempotent and node-wide; this engine keeps its metrics current, so it only counts."""
    began = time.perf_counter()
    v3 = _v3(request)
    record = await v3.gate(session_id, _tenant_name(request))
    patterns = (await v3.call(session_id, "GET", "/metrics")).body["patterns_learned"]
    elapsed = (time.perf_counter() - began) * 1000
    body = {
        "status": "completed",
        "patterns_processed": patterns,
        "time_ms": elapsed,
        "session_id": session_id,
        "node_id": record.node_id,
        "message": f"Training finalized: {patterns} patterns processed in {elapsed:.1f} ms",
    }
    return Response(body, headers=_headers(session_id))


@get(f"{_SESSION}/percept-data")
async def percept_data(request: AnyRequest, session_id: FromPath[str]) -> Response[Any]:
    """The last observation as v3 shows it (sorted strings, empty path)."""
    v3 = _v3(request)
    record = await v3.gate(session_id, _tenant_name(request))
    percept = (await v3.call(session_id, "GET", "/percept-data")).body["percept_data"]
    if percept:
        percept = {
            "strings": sorted(percept.get("strings", [])),
            "vectors": percept.get("vectors", []),
            "emotives": percept.get("emotives", {}),
            "path": [],
            "metadata": percept.get("metadata", {}),
        }
    body = {"percept_data": percept, "session_id": session_id, "node_id": record.node_id}
    return Response(body, headers=_headers(session_id))


@get(f"{_SESSION}/cognition-data")
async def cognition_data(request: AnyRequest, session_id: FromPath[str]) -> Response[Any]:
    """Predictions, emotives, symbols and STM of the session, with its ``time``."""
    v3 = _v3(request)
    record = await v3.gate(session_id, _tenant_name(request))
    cognition = (await v3.call(session_id, "GET", "/cognition-data")).body["cognition_data"]
    status = (await v3.call(session_id, "GET", "/status")).body
    cognition["time"] = status["time"]
    body = {"cognition_data": cognition, "session_id": session_id, "node_id": record.node_id}
    return Response(body, headers=_headers(session_id))


SESSION_HANDLERS = (
    create_session,
    session_count,
    read_session,
    delete_session,
    session_exists,
    extend_session,
    read_config,
    update_config,
    observe,
    observe_sequence,
    read_stm,
    learn,
    clear_stm,
    clear_all,
    predictions,
    finalize_training,
    percept_data,
    cognition_data,
)
