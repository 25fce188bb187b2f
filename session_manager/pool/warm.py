"""The warm pool: processors started before anyone asks, handed out by one claim each.

``WarmPool`` keeps ``WARM_POOL_SIZE`` unassigned processors (``AWAIT_CLAIM=1``, a random pool
id, a secret derived from it) started on its backend. ``claim(spec)`` takes the oldest, binds
it to the session in the backend (so ``list_owned``/``stop`` know whose it is), and claims it
with the session's environment: the processor becomes exactly what a cold start of ``spec``
would have been. A member that died in the pool is removed and the next one tried; with none
left the caller starts cold. A member is handed out once: when its session ends it is stopped
like any processor, and a fresh one replaces it in the pool.

Refilling runs in the background, ``_REFILL_AT_ONCE`` starts at most, none while a claim is in
progress (it would take CPU from the session being started), and only while the deployment's
start slots in use (``MAX_CONCURRENT_STARTS``, counted in Redis) leave one free for a real
start: refills never hold a slot, so they never turn a create away.

Restart: at ``start`` the pool adopts the unassigned processors an earlier manager of this
deployment left running (alive and still unclaimed; the surplus is stopped). ``drain`` (orderly
shutdown) stops every member. ``holds`` tells the backend wrapper which processors are pool
members, so the reconciler does not take them for orphans.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

import msgspec

from session_manager.backends.base import (
    POOL_ID_PREFIX,
    ProcessorHandle,
    ProcessorSpec,
    is_pool_id,
)
from session_manager.errors import KatoError
from session_manager.pool.claims import ClaimClient, ClaimError, Refusal
from session_manager.pool.metrics import PoolMetrics
from session_manager.pool.poolable import PoolableBackend
from session_manager.processor_secrets import SECRET_ENV, ProcessorSecrets
from session_manager.settings import Settings

__all__ = ("PoolStats", "WarmPool", "pool_spec")

log = logging.getLogger(__name__)

_REFILL_AT_ONCE = 2
"""Pooled processors starting at once: refills are background work next to real starts."""
_BUSY_POLL_S = 0.1
"""How often a refill waiting for a free start slot looks again."""
_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
"""Pauses after consecutive failed refills (a broken image must not spin)."""


class PoolStats(msgspec.Struct, frozen=True, kw_only=True):
    """The pool in ``GET /admin/stats``."""

    target: int
    ready: int
    refilling: int
    hits: int
    misses: int
    claim_failures: int
    refill_failures: int
    last_refill_ms: float | None


def pool_spec(settings: Settings, secrets: ProcessorSecrets | None) -> ProcessorSpec:
    """A new pool member: a pool id for its id and marker, what matters before its claim.

    The body limit is fixed when its app is built, so it is the deployment's (a claim cannot
    change it); everything else comes with the claim. The storage kind is given so that a
    MongoDB deployment's member imports its driver before it is offered, not at its claim.
    """
    pool_id = f"{POOL_ID_PREFIX}{uuid.uuid4().hex}"
    env = {
        "PROCESSOR_ID": pool_id,
        "AWAIT_CLAIM": "1",
        "MAX_BODY_BYTES": str(settings.max_proxy_body_bytes),
        "MAX_STATE_BYTES": str(settings.max_state_bytes),
        "STORAGE": settings.processor_storage,
    }
    if settings.mongo_url:
        env["MONGO_URL"] = settings.mongo_url
    if secrets is not None:
        env[SECRET_ENV] = secrets.for_processor(pool_id)
    return ProcessorSpec(session_id=pool_id, processor_id=pool_id, kb_id="", env=env)


class WarmPool:
    """Started, unassigned processors of one backend; see the module docstring."""

    def __init__(
        self,
        *,
        settings: Settings,
        backend: PoolableBackend,
        metrics: PoolMetrics,
        starts_in_use: Callable[[], Awaitable[int]],
        size: int | None = None,
    ) -> None:
        self.settings = settings
        self.size = settings.effective_warm_pool_size if size is None else size
        self.backend = backend
        self.metrics = metrics
        self._starts_in_use = starts_in_use
        self._secrets = ProcessorSecrets.from_key(settings.processor_secret_key)
        self._claims = ClaimClient(self._secrets, timeout_s=settings.start_timeout_s)
        self._members: collections.deque[ProcessorHandle] = collections.deque()
        self._ids: set[str | None] = set()
        """Pool ids of the members, waiting or starting."""
        self._refills: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._failures_in_a_row = 0
        self._claiming = 0
        """Claims in progress: refills wait for them (a claim is a user waiting, a refill not)."""
        self._counts = collections.Counter[str]()
        self._last_refill_ms: float | None = None
        metrics.target.set(self.size)

    # -- asked by the backend wrapper -------------------------------------------------------

    def holds(self, handle: ProcessorHandle) -> bool:
        """Whether this pool started (or adopted) ``handle`` and has not handed it out yet.

        Known by pool id, so a member still starting counts too: not an orphan.
        """
        return handle.session_id in self._ids

    def waiting(self) -> tuple[ProcessorHandle, ...]:
        """The members ready to be claimed, oldest first."""
        return tuple(self._members)

    async def claim(self, spec: ProcessorSpec) -> ProcessorHandle | None:
        """A pooled processor made into ``spec``'s processor, or ``None`` (start cold)."""
        self._claiming += 1
        try:
            return await self._claim_one(spec)
        finally:
            self._claiming -= 1
            self._wake.set()

    async def _claim_one(self, spec: ProcessorSpec) -> ProcessorHandle | None:
        while self._members:
            member = self._members.popleft()
            self._ids.discard(member.session_id)
            self._changed()
            try:
                handle = await self._claim(member, spec)
            except ClaimError as exc:
                self._counts["claim_failures"] += 1
                self.metrics.claim_failures.labels(reason=exc.refusal.value).inc()
                log.warning(
                    "pooled processor not claimed",
                    extra={"session_id": spec.session_id, "reason": str(exc)},
                )
                if exc.refusal is Refusal.REFUSED:
                    break  # this spec would fail on every member: a cold start says why
                continue
            self._counts["hits"] += 1
            self.metrics.claims.labels(outcome="hit").inc()
            return handle
        self._counts["misses"] += 1
        self.metrics.claims.labels(outcome="miss").inc()
        return None

    async def _claim(self, member: ProcessorHandle, spec: ProcessorSpec) -> ProcessorHandle:
        """Bind, then claim; on failure the member is removed (unless someone else has it)."""
        pool_id = str(member.session_id)
        bound = await self.backend.bind(member, spec.session_id)
        try:
            await self._claims.claim(member.endpoint, pool_id, spec.env)
        except ClaimError as exc:
            if exc.refusal is not Refusal.TAKEN:
                await self._stop(bound)
            raise
        except BaseException:  # cancelled mid-claim: it may or may not be claimed, remove it
            await asyncio.shield(self._stop(bound))
            raise
        return bound

    # -- running ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Adopt what an earlier manager left waiting, then keep the pool full."""
        await self._adopt()
        self._loop = asyncio.create_task(self._keep_full(), name="warm-pool")

    async def drain(self) -> None:
        """Stop refilling and stop every member (orderly shutdown)."""
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        for task in list(self._refills):
            task.cancel()
        await asyncio.gather(*self._refills, return_exceptions=True)
        members, self._members = list(self._members), collections.deque()
        self._ids.clear()
        self._changed()
        await asyncio.gather(*(self._stop(m) for m in members))
        await self._claims.aclose()

    def stats(self) -> PoolStats:
        """The pool as ``/admin/stats`` shows it."""
        return PoolStats(
            target=self.size,
            ready=len(self._members),
            refilling=len(self._refills),
            hits=self._counts["hits"],
            misses=self._counts["misses"],
            claim_failures=self._counts["claim_failures"],
            refill_failures=self._counts["refill_failures"],
            last_refill_ms=self._last_refill_ms,
        )

    async def _adopt(self) -> None:
        """Keep the unassigned members an earlier manager left (up to ``size``), stop others."""
        for handle in await self.backend.list_owned():
            if not is_pool_id(handle.session_id):
                continue  # a session's processor (a bound member names its session)
            keep = len(self._members) < self.size
            if keep and await self._claims.is_waiting(handle.endpoint, str(handle.session_id)):
                self._members.append(handle)
                self._ids.add(handle.session_id)
                log.info("pooled processor adopted", extra={"ref": handle.ref})
            else:
                await self._stop(handle)
        self._changed()

    async def _keep_full(self) -> None:
        while True:
            self._wake.clear()
            missing = self.size - len(self._members) - len(self._refills)
            if missing <= 0 or len(self._refills) >= _REFILL_AT_ONCE or self._claiming:
                await self._wake.wait()
            elif await self._slot_free():
                task = asyncio.create_task(self._refill_one())
                self._refills.add(task)
                task.add_done_callback(self._refill_done)
            else:
                await asyncio.sleep(_BUSY_POLL_S)

    async def _slot_free(self) -> bool:
        """Whether a refill may start now and leave a start slot free for a real start."""
        try:
            in_use = await self._starts_in_use()
        except KatoError:
            return False
        limit = max(1, self.settings.max_concurrent_starts - 1)
        return in_use + len(self._refills) < limit

    async def _refill_one(self) -> None:
        began = time.perf_counter()
        spec = pool_spec(self.settings, self._secrets)
        self._ids.add(spec.session_id)
        try:
            handle = await self.backend.start(spec)
        except BaseException as exc:  # StartFailed, the backend broke, or cancelled
            self._ids.discard(spec.session_id)
            if not isinstance(exc, Exception):
                raise
            self._counts["refill_failures"] += 1
            self.metrics.refill_failures.inc()
            pause = _BACKOFF_S[min(self._failures_in_a_row, len(_BACKOFF_S) - 1)]
            self._failures_in_a_row += 1
            log.warning("pooled processor did not start", extra={"error": str(exc)})
            await asyncio.sleep(pause)
            return
        elapsed = time.perf_counter() - began
        self._failures_in_a_row = 0
        self._last_refill_ms = round(elapsed * 1000, 1)
        self.metrics.refill.observe(elapsed)
        self._members.append(handle)
        self._changed()

    def _refill_done(self, task: asyncio.Task[None]) -> None:
        self._refills.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("refill crashed", exc_info=task.exception())
        self._wake.set()

    def _changed(self) -> None:
        self.metrics.ready.set(len(self._members))
        self._wake.set()

    async def _stop(self, handle: ProcessorHandle) -> None:
        try:
            await self.backend.stop(handle)
        except KatoError as exc:  # the reconciler removes it later (an orphan)
            log.warning("pooled processor not stopped", extra={"error": exc.message})
