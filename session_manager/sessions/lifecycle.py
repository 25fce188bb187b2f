"""Create, start and end sessions; the compare-and-set transitions every status change goes through.

Every change is a compare-and-set in Redis (``SessionStore.transition``/``end``), so two
replicas, a request and the reaper never both win. A session's processor is started by the
replica that reserved it; a replica that dies mid-start leaves a ``starting`` record whose
start slot expires by itself (the reconciler ends it). Each change also tells the route cache
(``forget``), so this replica stops using a stale route at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Literal

import msgspec

from session_manager.backends.base import Backend
from session_manager.clock import Clock
from session_manager.errors import (
    CapacityExceeded,
    IdempotencyKeyReused,
    KatoError,
    SessionConflict,
    SessionNotFound,
    StartFailed,
)
from session_manager.knowledge import PrivateKnowledge
from session_manager.metrics import Metrics
from session_manager.models import (
    DEFAULT_TENANT,
    EndReason,
    ProcessorHandle,
    SessionRecord,
    SessionStatus,
    Tenant,
)
from session_manager.sessions.records import gone, live_record, record_with_deadlines
from session_manager.sessions.specs import processor_spec
from session_manager.sessions.tokens import SessionTokens
from session_manager.settings import Settings
from session_manager.store import Capacity, SessionStore, TransitionResult

__all__ = ("LIVE", "Lifecycle", "NewSession")

log = logging.getLogger(__name__)

LIVE = tuple(SessionStatus)
"""Every status a live session can be in (what ``end`` accepts by default)."""


class NewSession(msgspec.Struct, frozen=True, kw_only=True):
    """What a create asks for; timeouts are capped by the settings, unset ones default.

    ``tenant`` is whose session it is and whose quotas it counts against; ``None`` is the
    default tenant with the global limits.
    """

    user_id: str
    tenant: Tenant | None = None
    kb_id: str | None = None
    genes: dict[str, Any] = {}
    idle_timeout_s: int | None = None
    max_age_s: int | None = None
    labels: dict[str, str] = {}
    session_id: str | None = None
    """A chosen id (the v3 API's ``session-<hex>-<ms>``); ``None``: a random one."""
    token_hash: str | None = None
    """A token hash the caller derived itself (the v3 API keeps no token); ``None``: issue one."""


class Lifecycle:
    """Reserve and start a session's processor, stop it, end the session; the CAS helpers."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: SessionStore,
        backend: Backend,
        metrics: Metrics,
        clock: Clock,
        tokens: SessionTokens,
        forget: Callable[[str], None],
    ) -> None:
        self.settings = settings
        self.store = store
        self.backend = backend
        self.metrics = metrics
        self.clock = clock
        self._tokens = tokens
        self._forget = forget
        self._tasks: set[asyncio.Task[Any]] = set()
        self._knowledge = (
            PrivateKnowledge(settings.mongo_url)
            if settings.processor_storage == "mongodb" and settings.mongo_url
            else None
        )

    @property
    def starts_in_flight(self) -> int:
        """Starts running in the background here (``create(wait=False)``, or a client gone)."""
        return len(self._tasks)

    async def wait_for_starts(self, timeout_s: float) -> None:
        """Wait, at most ``timeout_s``, for the starts in flight here to finish (shutdown)."""
        if self._tasks and timeout_s > 0:
            await asyncio.wait(list(self._tasks), timeout=timeout_s)

    async def aclose(self) -> None:
        """Let starts in flight finish (bounded by the start timeout); processors keep running."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=self.settings.start_timeout_s + 5)
        if self._knowledge is not None:
            await asyncio.to_thread(self._knowledge.close)

    # -- transitions ------------------------------------------------------------------------

    async def transition(self, session_id: str, **change: Any) -> TransitionResult:
        """``store.transition``, and this replica stops using a cached route at once."""
        result = await self.store.transition(session_id, **change)
        self._forget(session_id)
        return result

    async def to_hibernated(
        self,
        session_id: str,
        *,
        allowed: list[SessionStatus],
        only_if_epoch: int | None = None,
        bump_epoch: bool = False,
    ) -> TransitionResult:
        """CAS to ``hibernated``: no processor, no start slot, ``HIBERNATE_TTL_S`` running.

        The one way to put a session to rest, for a hibernation done and a restart that failed
        or was given up (``only_if_epoch``, ``bump_epoch``: see ``store.transition``).
        """
        return await self.transition(
            session_id,
            allowed=allowed,
            only_if_epoch=only_if_epoch,
            to=SessionStatus.HIBERNATED,
            fields={"backend": "", "ref": "", "endpoint": "", "node": ""},
            idle_deadline=self.clock.now_ms() + self.settings.hibernate_ttl_s * 1000,
            start_slot="remove",
            bump_epoch=bump_epoch,
        )

    async def _end_record(self, session_id: str, reason: str, **options: Any) -> TransitionResult:
        """``store.end`` (record removed, tombstone left), and the cached route dropped."""
        result = await self.store.end(session_id, reason, self.settings.tombstone_ttl_s, **options)
        self._forget(session_id)
        return result

    # -- create -----------------------------------------------------------------------------

    async def create(
        self, new: NewSession, *, wait: bool = True, idempotency_key: str | None = None
    ) -> tuple[SessionRecord, str | None]:
        """Reserve capacity, start the processor, and return the record with its token.

        With ``wait`` the record is ``ready`` (or ``StartFailed`` is raised and the session
        ended with reason ``start_failed``); without, it is ``starting`` and the start goes on
        in the background. The token is ``None`` with ``SESSION_AUTH=none``.

        ``idempotency_key`` (the client's ``Idempotency-Key``): the session id is derived from
        it and the tenant, so a create retried on any replica (its first attempt's answer lost
        with a dying replica) lands on the same id; ``reserve``'s atomic "id taken" check
        makes exactly one attempt create it, and every other one is a ``_replay``.
        """
        for _ in range(3):  # a replay may find its session's start failed: then create anew
            session_id = self._session_id(new, idempotency_key)
            if idempotency_key is None:
                return await self._create(session_id, new, wait)
            record, tombstone = await self.store.lookup(session_id)
            if record is None and tombstone and tombstone.reason != EndReason.START_FAILED:
                raise gone(session_id, tombstone)  # that session ran and ended: never again
            try:
                return await self._create(session_id, new, wait)
            except SessionConflict as exc:
                if exc.details.get("taken") is not True:
                    raise
            replayed = await self._replay(session_id, new, wait)
            if replayed is not None:
                return replayed
        raise SessionConflict(
            "the session of this Idempotency-Key keeps failing to start; retry later",
            session_id=session_id,
        )

    def _session_id(self, new: NewSession, idempotency_key: str | None) -> str:
        """Random or the caller's (v3's id format); with an idempotency key, a keyed hash.

        The hash covers the key and the tenant.

        Unguessable without the deployment's processor key, and never shared by two tenants.
        """
        if idempotency_key is None:
            return new.session_id or uuid.uuid4().hex
        tenant = new.tenant.name if new.tenant else DEFAULT_TENANT
        message = f"idempotency\0{tenant}\0{idempotency_key}".encode()
        key = self.settings.processor_secret_key.encode()
        return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]

    async def _replay(
        self, session_id: str, new: NewSession, wait: bool
    ) -> tuple[SessionRecord, str | None] | None:
        """The session an earlier create with the same key made, with a fresh token.

        The earlier answer (and its token, of which only the hash is stored) may never have
        reached the client, so the token is rotated: the one returned here is the valid one.
        A different request under the same key is refused (409). ``None``: that session's
        start failed (or it was ended as a stale start), so the caller creates it anew.
        """
        record, tombstone = await self.store.lookup(session_id)
        if record is None:
            if tombstone is None or tombstone.reason == EndReason.START_FAILED:
                return None
            raise gone(session_id, tombstone)
        tenant = new.tenant.name if new.tenant else DEFAULT_TENANT
        asked = (tenant, new.user_id, new.kb_id or record.kb_id, dict(new.genes), new.labels)
        if asked != (record.tenant, record.user_id, record.kb_id, record.genes, record.labels):
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used for a different create", session_id=session_id
            )
        while wait and record.status == SessionStatus.STARTING:
            # Its start runs on some replica. One that died mid-start leaves the slot to
            # expire: then this replica gives it up as the reconciler would (so the client
            # does not wait for a reconciler pass): a first start ends and the caller creates
            # it anew, a restart's session goes back to hibernated and is replayed as is.
            slot = await self.store.start_deadline(session_id)
            if slot is None or slot < self.clock.now_ms():
                await self.abandon_start(session_id)
            await asyncio.sleep(0.05)
            record, tombstone = await self.store.lookup(session_id)
            if record is None:
                if tombstone is None or tombstone.reason == EndReason.START_FAILED:
                    return None
                raise gone(session_id, tombstone)
        for _ in range(5):  # replays racing each other: each rotation needs the current hash
            token, token_hash = self._tokens.issue()
            if token is None:
                break
            if await self.store.rotate_token(session_id, record.token_hash, token_hash):
                self._forget(session_id)
                break
            record = await live_record(self.store, session_id)
        else:
            raise SessionConflict("concurrent retries of this create; retry", session_id=session_id)
        log.info("create replayed", extra={"session_id": session_id})
        return await record_with_deadlines(self.store, session_id), token

    async def _create(
        self, session_id: str, new: NewSession, wait: bool
    ) -> tuple[SessionRecord, str | None]:
        settings = self.settings
        now = self.clock.now_ms()
        max_age = min(new.max_age_s or settings.max_age_s, settings.max_age_s)
        idle = min(new.idle_timeout_s or settings.idle_timeout_s, max_age)
        token: str | None
        if new.token_hash is None:
            token, token_hash = self._tokens.issue()
        else:
            token, token_hash = None, new.token_hash if self._tokens.required else ""
        record = SessionRecord.starting(
            session_id,
            new.user_id,
            now,
            idle_timeout_s=idle,
            max_age_s=max_age,
            kb_id=new.kb_id,
            token_hash=token_hash,
            tenant=new.tenant.name if new.tenant else DEFAULT_TENANT,
            genes=dict(new.genes),
            labels=dict(new.labels),
        )
        try:
            await self.store.reserve(record, self._capacity(new.tenant))
        except CapacityExceeded as exc:
            self.metrics.capacity_rejections.labels(limit=exc.details["limit"]).inc()
            raise
        self.metrics.sessions_created.inc()
        log.info(
            "session reserved",
            extra={"session_id": session_id, "tenant": record.tenant, "user_id": new.user_id},
        )
        task = asyncio.create_task(self._start(record))
        self._tasks.add(task)
        task.add_done_callback(self._start_done)
        if not wait:
            return record, token
        # The start goes on if the client disconnects: it must either finish or clean up.
        return await asyncio.shield(task), token

    def _capacity(self, tenant: Tenant | None) -> Capacity:
        """The limits a create must fit in; a tenant's memory quota counts as sessions.

        Every processor gets the same ``PROCESSOR_MEMORY_LIMIT``, so "the memory limits of the
        tenant's sessions sum to at most ``max_memory_mb``" is a session count, checked in the
        same atomic reservation as ``max_sessions`` (racing creates cannot both pass).
        """
        s = self.settings
        tenant_max: int | None = None
        tenant_limit = "TENANT_MAX_SESSIONS"
        if tenant is not None:
            tenant_max = tenant.max_sessions
            by_memory = tenant.sessions_within_memory(s.processor_memory_limit_bytes)
            if by_memory is not None and by_memory < tenant_max:
                tenant_max, tenant_limit = by_memory, "TENANT_MAX_MEMORY_MB"
        return Capacity(
            max_sessions=s.max_sessions,
            max_tenant_sessions=tenant_max,
            tenant_limit=tenant_limit,
            max_per_user=tenant.max_sessions_per_user if tenant else s.max_sessions_per_user,
            max_starts=s.max_concurrent_starts,
            start_timeout_ms=int((s.start_timeout_s + s.stop_timeout_s) * 1000),
            retry_after_s=max(1, int(s.reap_interval_s)),
        )

    def _start_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.info("background start failed", extra={"error": str(task.exception())})

    async def _start(self, record: SessionRecord) -> SessionRecord:
        session_id = record.session_id
        try:
            handle = await self.launch(record)
        except KatoError as exc:
            await self._end_record(
                session_id,
                EndReason.START_FAILED,
                details={"status": "failed", "error": exc.message, **exc.details},
            )
            log.warning("session start failed", extra={"session_id": session_id})
            raise
        ready = await self.mark_ready(record, handle)
        log.info("session ready", extra={"session_id": session_id, "endpoint": handle.endpoint})
        return ready

    # -- processors -------------------------------------------------------------------------

    async def launch(self, record: SessionRecord) -> ProcessorHandle:
        """``backend.start`` with its duration measured and foreign errors made ``StartFailed``."""
        began = time.perf_counter()
        try:
            handle = await self.backend.start(processor_spec(self.settings, record))
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

    async def mark_ready(self, record: SessionRecord, handle: ProcessorHandle) -> SessionRecord:
        """CAS ``starting -> ready`` at ``record.epoch``; otherwise the processor is stopped.

        The epoch check: a start given up meanwhile (``abandon_start``) and claimed again since
        is ``starting`` once more, but not this start's any longer.
        """
        now = self.clock.now_ms()
        result = await self.transition(
            record.session_id,
            allowed=[SessionStatus.STARTING],
            only_if_epoch=record.epoch,
            to=SessionStatus.READY,
            fields={
                "backend": handle.backend,
                "ref": handle.ref,
                "endpoint": handle.endpoint,
                "node": handle.node,
                "last_activity": now,
            },
            idle_deadline=now + record.idle_timeout_s * 1000,
            hard_deadline=record.created_at + record.max_age_s * 1000,
            start_slot="remove",
        )
        if not result.ok:
            await self.stop(handle)
            raise SessionConflict(
                "the session ended or its start was given up while its processor was starting",
                session_id=record.session_id,
                status=result.previous,
            )
        ready = await self.store.get(record.session_id)
        if ready is None:  # ended right after becoming ready
            raise SessionNotFound("no such session", session_id=record.session_id)
        return ready

    async def stop(self, handle: ProcessorHandle) -> None:
        """``backend.stop``, measured; a failure is counted and raised."""
        began = time.perf_counter()
        try:
            await self.backend.stop(handle)
        except Exception:
            self.metrics.backend_errors.labels(backend=self.backend.name, op="stop").inc()
            raise
        self.metrics.stop_duration.observe(time.perf_counter() - began)

    async def abandon_start(self, session_id: str) -> Literal["ended", "hibernated"] | None:
        """Give up a ``starting`` session's start whose slot ran out; what became of it.

        The start's manager died, or the start outlived its slot (a loaded machine). A first
        start (epoch 0) acknowledged nothing: the session ends as ``start_failed``
        (``"ended"``). A restart's session (a restore or recovery: epoch 1 and up) holds
        acknowledged writes in its checkpoint and journal: it goes back to ``hibernated``
        (``"hibernated"``) with a new epoch, which fences whatever processor the given-up start
        may still bring up (its ``mark_ready`` fails and stops it), and its next request
        restores it. ``None``: no longer ``starting``.
        """
        record = await self.store.get(session_id)
        if record is None or record.status != SessionStatus.STARTING:
            return None
        if record.epoch == 0:
            ended = await self.end(
                session_id, EndReason.START_FAILED, allowed=(SessionStatus.STARTING,)
            )
            return "ended" if ended else None
        result = await self.to_hibernated(
            session_id,
            allowed=[SessionStatus.STARTING],
            only_if_epoch=record.epoch,
            bump_epoch=True,
        )
        if not result.ok:
            return None
        log.warning(
            "restart given up: its slot ran out; the session is hibernated and restores "
            "at its next request",
            extra={"session_id": session_id, "epoch": record.epoch},
        )
        return "hibernated"

    # -- end --------------------------------------------------------------------------------

    async def end(
        self,
        session_id: str,
        reason: str,
        *,
        allowed: tuple[SessionStatus, ...] = LIVE,
        details: Mapping[str, Any] | None = None,
        only_if_idle_due_at: int | None = None,
    ) -> bool:
        """Mark ``terminating``, stop the processor, remove the record, leave a tombstone.

        Returns False when the session is gone or not in ``allowed`` (or, with
        ``only_if_idle_due_at``, when a request moved the idle deadline past it: the reaper's
        idle end loses to activity). A failed stop leaves the session ``terminating`` (the
        reconciler retries) and raises.
        """
        marked = await self.transition(
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
            await self.stop(record.handle)
        ended = await self._end_record(
            session_id,
            reason,
            allowed=[SessionStatus.TERMINATING],
            details=details,
        )
        log.info("session ended", extra={"session_id": session_id, "reason": reason})
        if ended.ok:  # its record is gone, so no append can land after this
            await self.store.journal.delete(session_id)
            await self.store.v3.forget(session_id)  # a v3 API session's fields, if any
        if ended.ok and record is not None and self._knowledge is not None:
            await self._knowledge.drop(record)
        return ended.ok
