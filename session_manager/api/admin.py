"""The admin API, all of it: sessions (list, inspect, remove), stats, a reaper pass, processors.

Every route is under ``/admin`` and needs ``Authorization: Bearer <ADMIN_TOKEN>`` or an API key
with scope ``admin``. Such a key sees and removes only its tenant's sessions (another tenant's
answer 404, as if they did not exist); stats, reaper passes and processors concern every tenant,
so they take the ``ADMIN_TOKEN`` only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from litestar import Controller, Request, delete, get, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.status_codes import HTTP_204_NO_CONTENT

from session_manager.api.auth import admin_tenant, require_admin, require_deployment_admin
from session_manager.api.errors import documented
from session_manager.api.schemas import (
    GENE_NAMES,
    AdminSession,
    AdminSessionPage,
    Capacity,
    SnapshotStats,
    Stats,
)
from session_manager.api.sessions import LiveGenesQuery
from session_manager.backends.base import processors_by_node
from session_manager.errors import (
    Forbidden,
    ProcessorUnavailable,
    SessionConflict,
    SessionNotFound,
    StoreUnavailable,
    Unauthorized,
    ValidationFailed,
)
from session_manager.gateway.client import Gateway
from session_manager.gateway.health import ProcessorHealth
from session_manager.models import EndReason, SessionRecord, SessionStatus
from session_manager.reaper import Reaper, ReapReport
from session_manager.sessions import Sessions
from session_manager.settings import Settings
from session_manager.store import SessionStore, decode_cursor

__all__ = (
    "AdminController",
    "hibernate_session",
    "keepalive_session",
    "restore_session",
    "stats_of",
    "visible_record",
)

_LIST_ERRORS = documented(ValidationFailed, Unauthorized, Forbidden, StoreUnavailable)
_ONE_ERRORS = documented(
    ValidationFailed, Unauthorized, Forbidden, SessionNotFound, StoreUnavailable
)
_ACTION_ERRORS = documented(
    Unauthorized,
    Forbidden,
    SessionNotFound,
    SessionConflict,
    ProcessorUnavailable,
    StoreUnavailable,
)
_DEPLOYMENT_ERRORS = documented(Unauthorized, Forbidden, StoreUnavailable)


def _label(raw: str | None) -> tuple[str, str] | None:
    if raw is None:
        return None
    key, sep, value = raw.partition(":")
    if not sep or not key:
        raise ValidationFailed("label filter must be key:value", label=raw)
    return key, value


async def visible_record(sessions: Sessions, tenant: str | None, session_id: str) -> SessionRecord:
    """The session's record, if an admin of ``tenant`` may see it; another tenant's is a 404."""
    record = await sessions.inspect(session_id)
    if tenant is not None and record.tenant != tenant:
        raise SessionNotFound("no such session", session_id=session_id)
    return record


async def _visible(request: Request[Any, Any, Any], session_id: str) -> SessionRecord:
    return await visible_record(request.app.state.sessions, admin_tenant(request), session_id)


async def _act(
    request: Request[Any, Any, Any],
    session_id: str,
    action: Callable[[Sessions, SessionRecord], Awaitable[SessionRecord]],
) -> AdminSession:
    """An admin action on a session this credential may see; the session as it is after."""
    record = await action(request.app.state.sessions, await _visible(request, session_id))
    return AdminSession.of_record(record, request.app.state.settings.public_base_url())


async def stats_of(state: State) -> Stats:
    """Counts by status, capacity used and left, backend, snapshots, warm pool, nodes."""
    settings: Settings = state.settings
    store: SessionStore = state.store
    counts = await store.counts()
    snapshots = await store.snapshot_totals()
    total = counts.pop("total")
    starts = counts.pop("starts")
    return Stats(
        sessions_by_status=counts,
        total=total,
        capacity=Capacity(
            max_sessions=settings.max_sessions,
            used=total,
            left=max(0, settings.max_sessions - total),
            max_sessions_per_user=settings.max_sessions_per_user,
            max_concurrent_starts=settings.max_concurrent_starts,
            starts_in_progress=starts,
        ),
        backend=state.backend.name,
        manager_id=settings.manager_id,
        reap_action=settings.reap_action,
        snapshots=SnapshotStats(
            count=snapshots.count,
            bytes=snapshots.bytes,
            average_bytes=snapshots.bytes // snapshots.count if snapshots.count else 0,
        ),
        warm_pool=pool.stats() if (pool := state.get("pool")) else None,
        processors_by_node=await processors_by_node(state.backend),
    )


async def keepalive_session(sessions: Sessions, record: SessionRecord) -> SessionRecord:
    """Move the idle deadline as the session's own keepalive does; the updated record."""
    await sessions.store.touch(record.session_id)
    return await sessions.inspect(record.session_id)


async def hibernate_session(sessions: Sessions, record: SessionRecord) -> SessionRecord:
    """Hibernate a ``ready`` session now (as the reaper would); 409 in any other status."""
    if record.status != SessionStatus.READY or not await sessions.hibernate(record.session_id):
        raise SessionConflict(
            "only a ready session can be hibernated",
            session_id=record.session_id,
            status=str(record.status),
        )
    return await sessions.inspect(record.session_id)


async def restore_session(sessions: Sessions, record: SessionRecord) -> SessionRecord:
    """Restore a ``hibernated`` session now (as its next request would); 409 otherwise."""
    if record.status != SessionStatus.HIBERNATED:
        raise SessionConflict(
            "only a hibernated session can be restored",
            session_id=record.session_id,
            status=str(record.status),
        )
    await sessions.restore(record)  # None: another request is restoring it already
    return await sessions.inspect(record.session_id)


class AdminController(Controller):
    """``/admin``: the ADMIN_TOKEN, or an API key with scope ``admin`` (its tenant only)."""

    path = "/admin"
    guards = [require_admin]  # noqa: RUF012
    tags = ["admin"]  # noqa: RUF012

    @get("/sessions", responses=_LIST_ERRORS)
    async def list_sessions(
        self,
        request: Request[Any, Any, Any],
        status: FromQuery[SessionStatus | None] = None,
        user_id: FromQuery[str | None] = None,
        label: Annotated[str | None, QueryParameter(description="key:value")] = None,
        tenant: Annotated[
            str | None,
            QueryParameter(description="only this tenant's sessions (a tenant's key: its own)"),
        ] = None,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
    ) -> AdminSessionPage:
        """Live sessions in creation order; pass ``next_cursor`` back for the next page.

        ``user_id`` is a tenant's name for its user: with a tenant's key (or ``tenant``) it
        means that tenant's user; with the ADMIN_TOKEN alone, that name in every tenant.
        """
        if cursor is not None and decode_cursor(cursor) is None:
            raise ValidationFailed("cursor is not one this API returned", cursor=cursor)
        limited_to = admin_tenant(request)
        if limited_to is not None:
            if tenant is not None and tenant != limited_to:
                raise Forbidden("this API key sees only its own tenant", tenant=tenant)
            tenant = limited_to
        store: SessionStore = request.app.state.store
        page = await store.page(
            limit=limit,
            cursor=cursor,
            status=status,
            user_id=user_id,
            label=_label(label),
            tenant=tenant,
        )
        base = request.app.state.settings.public_base_url()
        return AdminSessionPage(
            sessions=[AdminSession.of_record(r, base) for r in page.records],
            next_cursor=page.next_cursor,
        )

    @get("/sessions/{session_id:str}", responses=_ONE_ERRORS)
    async def inspect(
        self,
        request: Request[Any, Any, Any],
        session_id: FromPath[str],
        live_genes: LiveGenesQuery = False,
    ) -> AdminSession:
        """A session's record, where its processor runs included (live genes on request)."""
        sessions: Sessions = request.app.state.sessions
        record = await _visible(request, session_id)
        now = await sessions.live_genes(record, GENE_NAMES) if live_genes else None
        return AdminSession.of_record(
            record, request.app.state.settings.public_base_url(), live_genes=now
        )

    @delete("/sessions/{session_id:str}", status_code=HTTP_204_NO_CONTENT, responses=_ONE_ERRORS)
    async def remove(self, request: Request[Any, Any, Any], session_id: FromPath[str]) -> None:
        """Force-remove a session (reason ``deleted``)."""
        sessions: Sessions = request.app.state.sessions
        await _visible(request, session_id)
        await sessions.end(session_id, EndReason.DELETED)

    @post("/sessions/{session_id:str}/keepalive", status_code=200, responses=_ACTION_ERRORS)
    async def keepalive(
        self, request: Request[Any, Any, Any], session_id: FromPath[str]
    ) -> AdminSession:
        """Move the session's idle deadline now, without its token."""
        return await _act(request, session_id, keepalive_session)

    @post("/sessions/{session_id:str}/hibernate", status_code=200, responses=_ACTION_ERRORS)
    async def hibernate(
        self, request: Request[Any, Any, Any], session_id: FromPath[str]
    ) -> AdminSession:
        """Hibernate a ready session now: its state to Redis, its processor stopped."""
        return await _act(request, session_id, hibernate_session)

    @post("/sessions/{session_id:str}/restore", status_code=200, responses=_ACTION_ERRORS)
    async def restore(
        self, request: Request[Any, Any, Any], session_id: FromPath[str]
    ) -> AdminSession:
        """Restore a hibernated session now, instead of at its next request."""
        return await _act(request, session_id, restore_session)

    @get("/stats", guards=[require_deployment_admin], responses=_DEPLOYMENT_ERRORS)
    async def stats(self, state: State) -> Stats:
        """Counts by status, capacity used and left, backend name, snapshot bytes kept."""
        return await stats_of(state)

    @post("/reap", status_code=200, guards=[require_deployment_admin], responses=_DEPLOYMENT_ERRORS)
    async def reap_now(self, request: Request[Any, Any, Any]) -> ReapReport:
        """Run a reaper pass now, on this instance; what it did (hibernated, ended, skipped)."""
        reaper: Reaper = request.app.state.reaper
        return await reaper.reap_once()

    @get("/processors", guards=[require_deployment_admin], responses=_DEPLOYMENT_ERRORS)
    async def list_processors(self, state: State) -> list[ProcessorHealth]:
        """Registered processors (gateway mode) with their health; empty otherwise."""
        gateway: Gateway | None = state.gateway
        return gateway.status() if gateway is not None else []
