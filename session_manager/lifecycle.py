"""Sessions: start -> ready -> hibernate -> restore -> end; the only code that changes a status.

Every change is a compare-and-set in Redis (``SessionStore.transition``/``end``), so two
replicas, a request and the reaper never both win. A session's processor is started by the
replica that reserved it; a replica that dies mid-start leaves a ``starting`` record whose
start slot expires by itself (the reconciler ends it).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
import time
import uuid
from collections.abc import Mapping
from typing import Any, Protocol

import httpx
import msgspec

from session_manager.backends.base import Backend, ProcessorHandle, ProcessorSpec
from session_manager.clock import Clock
from session_manager.errors import (
    CapacityExceeded,
    KatoError,
    ProcessorTimeout,
    ProcessorUnavailable,
    SessionConflict,
    SessionExpired,
    SessionNotFound,
    StartFailed,
    StoreUnavailable,
    Unauthorized,
)
from session_manager.knowledge import PrivateKnowledge
from session_manager.metrics import Metrics
from session_manager.models import EndReason, SessionRecord, SessionStatus, Tombstone
from session_manager.settings import Settings
from session_manager.store import Capacity, SessionStore, TransitionResult

__all__ = ("ProcessorRoute", "Sessions", "hash_token")

log = logging.getLogger(__name__)

_LIVE = tuple(SessionStatus)
_POLL_S = 0.05
_TOUCH_EVERY_MS = 1000
_TOUCHED_MAX = 100_000
_ROUTE_TTL_S = 5.0
"""Bounds how stale a cached route can be if a change message were ever missed."""
_ROUTES_MAX = 100_000
_SETTLE_S = 0.02
_SETTLE_ATTEMPTS = 5


class ProcessorRoute(msgspec.Struct, frozen=True):
    """Where the proxy sends a session's requests."""

    session_id: str
    endpoint: str


class StaticRoutes(Protocol):
    """Processors registered from configuration (gateway mode), reached by processor id."""

    def __contains__(self, processor_id: object) -> bool:
        """Whether the id is a registered processor."""
        ...

    def endpoint_for(self, processor_id: str) -> str | None:
        """The URL of a registered, healthy processor; ``None`` when the id is not registered.

        Raises ``ProcessorUnhealthy`` (503) for a registered processor that failed its check.
        """
        ...


class _CachedRoute(msgspec.Struct, frozen=True):
    endpoint: str
    token_hash: str
    at: float


def hash_token(token: str) -> str:
    """How session tokens are stored: SHA-256 hex (tokens are random, so no salt is needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Sessions:
    """Creates, resolves, keeps alive, hibernates, restores and ends sessions."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: SessionStore,
        backend: Backend,
        metrics: Metrics,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.store = store
        self.backend = backend
        self.metrics = metrics
        self.clock = clock
        self._tasks: set[asyncio.Task[Any]] = set()
        self._touched: dict[str, int] = {}
        self._routes: dict[str, _CachedRoute] = {}
        self._routes_live = False
        self._epoch = 0
        self._watcher: asyncio.Task[None] | None = None
        self.static: StaticRoutes | None = None
        """Gateway mode: ids of registered processors route to them, never to Redis records."""
        self._knowledge = (
            PrivateKnowledge(settings.mongo_url)
            if settings.processor_storage == "mongodb" and settings.mongo_url
            else None
        )
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(
                settings.proxy_read_timeout_s, connect=settings.proxy_connect_timeout_s
            ),
            trust_env=False,
        )

    def start_watching(self) -> None:
        """Follow every replica's status changes, so ``resolve`` may serve routes from memory."""
        self._watcher = asyncio.create_task(self._watch_changes())

    async def _watch_changes(self) -> None:
        """Keep the route cache honest: drop a session's route whenever its status changes.

        The cache is used only while subscribed; a broken subscription (messages may be lost)
        empties it and turns it off until the next subscription is confirmed.
        """
        while True:
            try:
                async for session_id in self.store.changes():
                    self._forget(session_id)
                    if not session_id:
                        self._routes_live = True
            except StoreUnavailable:
                log.warning("change feed lost; route cache off until Redis is back")
            except Exception:
                log.exception("change feed failed; route cache off")
            finally:
                self._routes_live = False
                self._forget("")
            await asyncio.sleep(1.0)

    def _forget(self, session_id: str) -> None:
        """Drop one cached route (all of them for ``""``); fills racing this are discarded."""
        self._epoch += 1
        if session_id:
            self._routes.pop(session_id, None)
        else:
            self._routes.clear()

    async def _transition(self, session_id: str, **change: Any) -> TransitionResult:
        """``store.transition``, and this replica stops using a cached route at once."""
        result = await self.store.transition(session_id, **change)
        self._forget(session_id)
        return result

    async def _end(self, session_id: str, reason: str, **options: Any) -> TransitionResult:
        """``store.end``, and this replica stops using a cached route at once."""
        result = await self.store.end(session_id, reason, self.settings.tombstone_ttl_s, **options)
        self._forget(session_id)
        return result

    async def aclose(self) -> None:
        """Let starts in flight finish (bounded by the start timeout); processors keep running."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=self.settings.start_timeout_s + 5)
        await self._http.aclose()
        if self._knowledge is not None:
            await asyncio.to_thread(self._knowledge.close)

    # -- create -----------------------------------------------------------------------------

    async def create(
        self,
        *,
        user_id: str,
        kb_id: str | None = None,
        genes: Mapping[str, Any] | None = None,
        idle_timeout_s: int | None = None,
        max_age_s: int | None = None,
        labels: Mapping[str, str] | None = None,
        wait: bool = True,
    ) -> tuple[SessionRecord, str | None]:
        """Reserve capacity, start the processor, and return the record with its token.

        With ``wait`` the record is ``ready`` (or ``StartFailed`` is raised and the session
        ended with reason ``start_failed``); without, it is ``starting`` and the start goes on
        in the background. The token is ``None`` with ``SESSION_AUTH=none``.
        """
        settings = self.settings
        now = self.clock.now_ms()
        session_id = uuid.uuid4().hex
        max_age = min(max_age_s or settings.max_age_s, settings.max_age_s)
        idle = min(idle_timeout_s or settings.idle_timeout_s, max_age)
        token = secrets.token_urlsafe(32) if settings.session_auth == "token" else None
        record = SessionRecord(
            session_id=session_id,
            user_id=user_id,
            kb_id=kb_id or session_id,
            processor_id=session_id,
            status=SessionStatus.STARTING,
            created_at=now,
            last_activity=now,
            status_changed_at=now,
            idle_timeout_s=idle,
            max_age_s=max_age,
            token_hash=hash_token(token) if token else "",
            genes=dict(genes or {}),
            labels=dict(labels or {}),
        )
        try:
            await self.store.reserve(record, self._capacity())
        except CapacityExceeded as exc:
            self.metrics.capacity_rejections.labels(limit=exc.details["limit"]).inc()
            raise
        self.metrics.sessions_created.inc()
        log.info("session reserved", extra={"session_id": session_id, "user_id": user_id})
        task = asyncio.create_task(self._start(record))
        self._tasks.add(task)
        task.add_done_callback(self._start_done)
        if not wait:
            return record, token
        # The start goes on if the client disconnects: it must either finish or clean up.
        return await asyncio.shield(task), token

    def _capacity(self) -> Capacity:
        s = self.settings
        return Capacity(
            max_sessions=s.max_sessions,
            max_per_user=s.max_sessions_per_user,
            max_starts=s.max_concurrent_starts,
            start_timeout_ms=int((s.start_timeout_s + s.stop_timeout_s) * 1000),
            retry_after_s=max(1, int(s.reap_interval_s)),
        )

    def _start_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.info("background start failed", extra={"error": str(task.exception())})

    def _spec(self, record: SessionRecord) -> ProcessorSpec:
        env = {
            "PROCESSOR_ID": record.processor_id,
            "PROCESSOR_NAME": f"session-{record.session_id}",
            "KB_ID": record.kb_id,
            "STORAGE": self.settings.processor_storage,
            # Hibernation snapshots come back through PUT /state: allow what the proxy allows.
            "MAX_BODY_BYTES": str(self.settings.max_proxy_body_bytes),
        }
        if self.settings.mongo_url:
            env["MONGO_URL"] = self.settings.mongo_url
        env.update({name.upper(): _env_value(value) for name, value in record.genes.items()})
        return ProcessorSpec(
            session_id=record.session_id,
            processor_id=record.processor_id,
            kb_id=record.kb_id,
            env=env,
        )

    async def _launch(self, record: SessionRecord) -> ProcessorHandle:
        """``backend.start`` with its duration measured and foreign errors made ``StartFailed``."""
        began = time.perf_counter()
        try:
            handle = await self.backend.start(self._spec(record))
        except Exception as exc:
            self.metrics.start_duration.labels(outcome="failed").observe(
                time.perf_counter() - began
            )
            self.metrics.backend_errors.labels(backend=self.backend.name, op="start").inc()
            if isinstance(exc, KatoError):
                raise
            log.exception("backend start crashed", extra={"session_id": record.session_id})
            raise StartFailed(f"processor did not start: {exc}") from exc
        self.metrics.start_duration.labels(outcome="ready").observe(time.perf_counter() - began)
        return handle

    async def _start(self, record: SessionRecord) -> SessionRecord:
        session_id = record.session_id
        try:
            handle = await self._launch(record)
        except KatoError as exc:
            await self._end(
                session_id,
                EndReason.START_FAILED,
                details={"status": "failed", "error": exc.message, **exc.details},
            )
            log.warning("session start failed", extra={"session_id": session_id})
            raise
        ready = await self._mark_ready(record, handle)
        log.info("session ready", extra={"session_id": session_id, "endpoint": handle.endpoint})
        return ready

    async def _mark_ready(self, record: SessionRecord, handle: ProcessorHandle) -> SessionRecord:
        """CAS ``starting -> ready``; a session ended meanwhile gets its processor stopped."""
        now = self.clock.now_ms()
        result = await self._transition(
            record.session_id,
            allowed=[SessionStatus.STARTING],
            to=SessionStatus.READY,
            fields={
                "backend": handle.backend,
                "ref": handle.ref,
                "endpoint": handle.endpoint,
                "last_activity": now,
            },
            idle_deadline=now + record.idle_timeout_s * 1000,
            hard_deadline=record.created_at + record.max_age_s * 1000,
            start_slot="remove",
        )
        if not result.ok:
            await self._stop(handle)
            raise SessionConflict(
                "the session ended while its processor was starting",
                session_id=record.session_id,
                status=result.previous,
            )
        ready = await self.store.get(record.session_id)
        if ready is None:  # ended right after becoming ready
            raise SessionNotFound("no such session", session_id=record.session_id)
        return ready

    async def _stop(self, handle: ProcessorHandle) -> None:
        began = time.perf_counter()
        try:
            await self.backend.stop(handle)
        except Exception:
            self.metrics.backend_errors.labels(backend=self.backend.name, op="stop").inc()
            raise
        self.metrics.stop_duration.observe(time.perf_counter() - began)

    # -- lookups ----------------------------------------------------------------------------

    async def _live(self, session_id: str) -> SessionRecord:
        """The record, or 404 / 410 with the tombstone's reason."""
        record, tombstone = await self.store.lookup(session_id)
        if record is not None:
            return record
        raise _gone(session_id, tombstone)

    def _authorize(self, record: SessionRecord, authorization: str | None) -> None:
        self._check_token(record.token_hash, authorization)

    def _check_token(self, token_hash: str, authorization: str | None) -> None:
        if self.settings.session_auth == "none":
            return
        token = _bearer(authorization)
        if token is None:
            raise Unauthorized("missing session token (Authorization: Bearer <token>)")
        if not hmac.compare_digest(hash_token(token), token_hash):
            raise Unauthorized("wrong session token")

    async def get(self, session_id: str, authorization: str | None) -> SessionRecord:
        """The session's record (with deadlines) for its token holder."""
        record = await self.inspect(session_id)
        self._authorize(record, authorization)
        return record

    async def inspect(self, session_id: str) -> SessionRecord:
        """The record with its deadlines, without a token check (admin); 404 or 410."""
        record = await self.store.get(session_id)
        if record is None:
            raise _gone(session_id, await self.store.tombstone(session_id))
        return record

    async def keepalive(self, session_id: str, authorization: str | None) -> SessionRecord:
        """Push the idle deadline to now + the session's idle timeout; the updated record."""
        await self.get(session_id, authorization)
        await self.store.touch(session_id)
        return await self.inspect(session_id)

    async def touch(self, session_id: str) -> None:
        """Note activity (the proxy calls this): moves the idle deadline at most once a second.

        Idle timeouts are minutes long, so a deadline up to a second stale costs nothing, and a
        busy session costs one Redis script per second instead of one per request.
        """
        if self.static is not None and session_id in self.static:
            return  # static processors are never reaped: no deadline to move
        now = self.clock.now_ms()
        if now - self._touched.get(session_id, -_TOUCH_EVERY_MS) < _TOUCH_EVERY_MS:
            return
        if len(self._touched) >= _TOUCHED_MAX:
            self._touched.clear()
        self._touched[session_id] = now
        await self.store.touch(session_id)

    async def resolve(self, session_id: str, authorization: str | None) -> ProcessorRoute:
        """Where to send this request; waits out starts and restores a hibernated session.

        Raises ``SessionNotFound``, ``SessionExpired``, ``Unauthorized``, ``StoreUnavailable``,
        or ``ProcessorTimeout`` when the session does not settle within the start timeout.
        """
        if self.static is not None:
            endpoint = self.static.endpoint_for(session_id)
            if endpoint is not None:
                return ProcessorRoute(session_id=session_id, endpoint=endpoint)
        cached = self._routes.get(session_id)
        if cached is not None and time.monotonic() - cached.at < _ROUTE_TTL_S:
            self._check_token(cached.token_hash, authorization)
            return ProcessorRoute(session_id=session_id, endpoint=cached.endpoint)
        epoch = self._epoch
        route = await self.store.route(session_id)
        if route is None:
            raise _gone(session_id, await self.store.tombstone(session_id))
        self._check_token(route.token_hash, authorization)
        if route.status == SessionStatus.READY:
            if self._routes_live and epoch == self._epoch:  # no change arrived meanwhile
                if len(self._routes) >= _ROUTES_MAX:
                    self._routes.clear()
                self._routes[session_id] = _CachedRoute(
                    route.endpoint, route.token_hash, time.monotonic()
                )
            return ProcessorRoute(session_id=session_id, endpoint=route.endpoint)
        record = await self._live(session_id)
        deadline = time.monotonic() + self.settings.start_timeout_s + self.settings.stop_timeout_s
        while True:
            if record.status == SessionStatus.READY:
                return ProcessorRoute(session_id=session_id, endpoint=record.endpoint)
            if record.status == SessionStatus.HIBERNATED:
                restored = await self.restore(record)
                if restored is not None:
                    return ProcessorRoute(session_id=session_id, endpoint=restored.endpoint)
            elif time.monotonic() >= deadline:
                raise ProcessorTimeout(
                    f"the session is still {record.status}", session_id=session_id
                )
            else:
                await asyncio.sleep(_POLL_S)
            record = await self._live(session_id)

    # -- hibernate and restore --------------------------------------------------------------

    async def hibernate(self, session_id: str, *, only_if_idle_due_at: int | None = None) -> bool:
        """Save the processor's state to Redis, remove the processor, mark ``hibernated``.

        With ``only_if_idle_due_at`` nothing happens unless the idle deadline is still due then
        (a request that moved it wins). Returns whether the session was hibernated. A processor
        whose state cannot be read is left running and ``ready`` (``ProcessorUnavailable``).
        """
        result = await self._transition(
            session_id,
            allowed=[SessionStatus.READY],
            to=SessionStatus.HIBERNATING,
            only_if_idle_due_at=only_if_idle_due_at,
        )
        if not result.ok:
            return False
        record = await self.store.get(session_id)
        handle = record.handle if record is not None else None
        if record is None or handle is None:
            return False
        try:
            state = await self._settled_state(handle)
        except KatoError:
            await self._transition(
                session_id, allowed=[SessionStatus.HIBERNATING], to=SessionStatus.READY
            )
            raise
        await self.store.save_snapshot(session_id, state)
        await self._stop(handle)
        done = await self._transition(
            session_id,
            allowed=[SessionStatus.HIBERNATING],
            to=SessionStatus.HIBERNATED,
            fields={"backend": "", "ref": "", "endpoint": ""},
            idle_deadline=self.clock.now_ms() + self.settings.hibernate_ttl_s * 1000,
        )
        if done.ok:
            self.metrics.hibernations.inc()
            log.info("session hibernated", extra={"session_id": session_id})
        return done.ok

    async def _settled_state(self, handle: ProcessorHandle) -> bytes:
        """The processor's state once requests already on their way have landed.

        Requests routed before the session left ``ready`` may still be in flight; new ones
        wait. Two equal snapshots 20 ms apart mean nothing more is arriving.
        """
        state = await self._processor_call("GET", handle, "/state")
        for _ in range(_SETTLE_ATTEMPTS):
            await asyncio.sleep(_SETTLE_S)
            again = await self._processor_call("GET", handle, "/state")
            if again == state:
                break
            state = again
        return state

    async def restore(self, record: SessionRecord) -> SessionRecord | None:
        """Start a new processor for a ``hibernated`` session and load its snapshot into it.

        Returns the ``ready`` record, or ``None`` when another task is already restoring it.
        On failure the session goes back to ``hibernated`` (snapshot kept) and the error is
        raised.
        """
        now = self.clock.now_ms()
        began = time.perf_counter()
        slot = now + int((self.settings.start_timeout_s + self.settings.stop_timeout_s) * 1000)
        claimed = await self._transition(
            record.session_id,
            allowed=[SessionStatus.HIBERNATED],
            to=SessionStatus.STARTING,
            start_slot=slot,
        )
        if not claimed.ok:
            return None
        return await self._restart(record, began)

    async def recover(self, record: SessionRecord) -> SessionRecord | None:
        """Replace a ``ready`` session's vanished processor, from its snapshot if any.

        For the reconciler. Returns the ready record, or ``None`` when the status changed
        meanwhile.
        """
        claimed = await self._transition(
            record.session_id,
            allowed=[SessionStatus.READY],
            to=SessionStatus.STARTING,
            fields={"backend": "", "ref": "", "endpoint": ""},
            idle_deadline="remove",
            start_slot=self.clock.now_ms() + int(self.settings.start_timeout_s * 1000),
        )
        if not claimed.ok:
            return None
        return await self._restart(record, time.perf_counter())

    async def _restart(self, record: SessionRecord, began: float) -> SessionRecord:
        handle: ProcessorHandle | None = None
        try:
            handle = await self._launch(record)
            snapshot = await self.store.load_snapshot(record.session_id)
            if snapshot is not None:
                await self._processor_call("PUT", handle, "/state", snapshot)
        except KatoError:
            if handle is not None:
                await self._stop(handle)
            # Back to hibernated (snapshot kept), on the usual hibernation clock.
            await self._transition(
                record.session_id,
                allowed=[SessionStatus.STARTING],
                to=SessionStatus.HIBERNATED,
                idle_deadline=self.clock.now_ms() + self.settings.hibernate_ttl_s * 1000,
                start_slot="remove",
            )
            raise
        ready = await self._mark_ready(record, handle)
        if snapshot is not None:
            await self.store.delete_snapshot(record.session_id)
        self.metrics.restores.inc()
        self.metrics.restore_duration.observe(time.perf_counter() - began)
        log.info("session restored", extra={"session_id": record.session_id})
        return ready

    async def _processor_call(
        self, method: str, handle: ProcessorHandle, path: str, body: bytes | None = None
    ) -> bytes:
        """A call to the processor's own API (``/state``); errors become 502/504."""
        headers = {"content-type": "application/json"} if body is not None else None
        try:
            response = await self._http.request(
                method, handle.endpoint + path, content=body, headers=headers
            )
        except httpx.TimeoutException as exc:
            raise ProcessorTimeout(f"processor {method} {path} timed out") from exc
        except httpx.TransportError as exc:
            raise ProcessorUnavailable(f"processor {method} {path} failed: {exc}") from exc
        if response.status_code >= 300:
            raise ProcessorUnavailable(
                f"processor {method} {path} answered {response.status_code}",
                body=response.text[:500],
            )
        return response.content

    # -- end --------------------------------------------------------------------------------

    async def delete(self, session_id: str, authorization: str | None) -> None:
        """The token holder ends the session (reason ``deleted``)."""
        self._authorize(await self._live(session_id), authorization)
        await self.end(session_id, EndReason.DELETED)

    async def end(
        self,
        session_id: str,
        reason: str,
        *,
        allowed: tuple[SessionStatus, ...] = _LIVE,
        details: Mapping[str, Any] | None = None,
        only_if_idle_due_at: int | None = None,
    ) -> bool:
        """Mark ``terminating``, stop the processor, remove the record, leave a tombstone.

        Returns False when the session is gone or not in ``allowed`` (or, with
        ``only_if_idle_due_at``, when a request moved the idle deadline past it: the reaper's
        idle end loses to activity). A failed stop leaves the session ``terminating`` (the
        reconciler retries) and raises.
        """
        marked = await self._transition(
            session_id,
            allowed=allowed,
            to=SessionStatus.TERMINATING,
            idle_deadline="remove",
            hard_deadline="remove",
            only_if_idle_due_at=only_if_idle_due_at,
        )
        if not marked.ok:
            return False
        record = await self.store.get(session_id)
        if record is not None and record.handle is not None:
            await self._stop(record.handle)
        ended = await self._end(
            session_id,
            reason,
            allowed=[SessionStatus.TERMINATING],
            details=details,
        )
        log.info("session ended", extra={"session_id": session_id, "reason": reason})
        if ended.ok and record is not None and self._knowledge is not None:
            await self._knowledge.drop(record)
        return ended.ok


def _gone(session_id: str, tombstone: Tombstone | None) -> KatoError:
    if tombstone is None:
        return SessionNotFound("no such session", session_id=session_id)
    return SessionExpired(
        f"the session ended ({tombstone.reason})",
        session_id=session_id,
        reason=tombstone.reason,
        ended_at=tombstone.ended_at,
        **tombstone.details,
    )
