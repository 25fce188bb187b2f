"""Hibernate, restore, checkpoint and recover: a session's state between its processor and Redis.

``hibernate`` fences the processor (``POST /fence``: requests admitted before it finish, later
ones answer 503 ``PROCESSOR_FENCED`` and the proxy resends them after the restore; open
WebSockets close with 1012), saves its ``/state`` as a snapshot and removes the processor;
``checkpoint`` saves it and leaves the processor running. Either trims the session's journal
(``store.journal``) of the requests the snapshot holds. ``restore`` (a request for a
``hibernated`` session) and ``recover`` (a ``ready`` session whose processor vanished: the
proxy finding it unreachable, or the reconciler) start a new processor, load the snapshot and
replay the journal's later entries in order, so the state equals the lost processor's as of its
last acknowledged request. The snapshot is kept: it is the session's checkpoint.

A backend that sees its processors exit reports a crash at once (``sessions.crash_watch``),
and ``recover_lost`` runs then, before any request asks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from session_manager.errors import (
    KatoError,
    ProcessorUnavailable,
    SessionConflict,
    SessionNotReady,
)
from session_manager.models import ProcessorHandle, SessionRecord, SessionStatus
from session_manager.processor_client import ProcessorClient, ProcessorState, snapshot_json
from session_manager.sessions.exits import PROCESSOR_OUT_OF_MEMORY, ProcessorExits
from session_manager.sessions.lifecycle import Lifecycle
from session_manager.sessions.start_gate import StartGate

__all__ = ("Hibernation",)

log = logging.getLogger(__name__)


class _Position(msgspec.Struct):
    """The one field of a snapshot the journal needs: how many requests it holds."""

    seq: int = 0


def snapshot_seq(snapshot: bytes) -> int:
    """The sequence number of a ``GET /state`` body (0 for snapshots older than the journal)."""
    try:
        return msgspec.json.decode(snapshot_json(snapshot), type=_Position).seq
    except (msgspec.DecodeError, ValueError) as exc:
        raise ProcessorUnavailable("the saved snapshot is not a processor state") from exc


class Hibernation:
    """Moves sessions to and from ``hibernated`` through ``lifecycle``'s transitions."""

    def __init__(self, lifecycle: Lifecycle, processors: ProcessorClient) -> None:
        self._lifecycle = lifecycle
        self._processors = processors
        self._store = lifecycle.store
        self._settings = lifecycle.settings
        self._clock = lifecycle.clock
        self._metrics = lifecycle.metrics
        self.exits = ProcessorExits(lifecycle)
        self._starts = StartGate(
            store=self._store, settings=self._settings, clock=self._clock, metrics=self._metrics
        )
        self.on_replayed: Callable[[str], None] | None = None
        """Called with a session id after a restart replayed journal entries (the app asks
        for a checkpoint then: a second crash should not replay the same entries again)."""
        self.before_replay: Callable[[str], Awaitable[None]] | None = None
        """Awaited with a session id before a restart reads its journal (the proxy settles the
        entries it wrote ahead for requests still in flight: ``RequestJournal.settled``)."""

    async def hibernate(self, session_id: str, *, only_if_idle_due_at: int | None = None) -> bool:
        """Save the processor's state to Redis, remove the processor, mark ``hibernated``.

        With ``only_if_idle_due_at`` nothing happens unless the idle deadline is still due then
        (a request that moved it wins). Returns whether the session was hibernated. A processor
        whose state cannot be read or saved is unfenced and left running and ``ready`` (the
        error, e.g. ``ProcessorUnavailable``, is raised).
        """
        result = await self._lifecycle.transition(
            session_id,
            allowed=[SessionStatus.READY],
            to=SessionStatus.HIBERNATING,
            only_if_idle_due_at=only_if_idle_due_at,
        )
        if not result.ok:
            return False
        record = await self._store.get(session_id)
        handle = record.handle if record is not None else None
        if record is None or handle is None:
            return False
        try:
            async with self._checkpoint_lock(session_id, wait=True) as taken:
                if not taken:
                    raise ProcessorUnavailable("a checkpoint of the session is still running")
                # The fence is the barrier: after it the state is final, so one read is exact.
                pid, epoch = record.processor_id, record.epoch
                if not await self._processors.fence(handle.endpoint, processor_id=pid, epoch=epoch):
                    log.warning(
                        "processor has no fence (image older than the manager): hibernating"
                        " without the barrier; the journal still holds what races it",
                        extra={"session_id": session_id},
                    )
                state = await self._processors.get_state(
                    handle.endpoint, processor_id=pid, epoch=epoch
                )
                await self._save_checkpoint(session_id, state)
        except KatoError:
            await self._back_to_ready(session_id, handle, record)
            raise
        await self._lifecycle.stop(handle)
        done = await self._lifecycle.to_hibernated(session_id, allowed=[SessionStatus.HIBERNATING])
        if done.ok:
            self._metrics.hibernations.inc()
            log.info("session hibernated", extra={"session_id": session_id})
        return done.ok

    @property
    def stale_after_ms(self) -> int:
        """How long a hibernation may last before it counts as abandoned (its manager died).

        A live one is done well within this: the checkpoint lock's wait and the read of the
        state (each at most ``PROXY_READ_TIMEOUT_S + STOP_TIMEOUT_S``), then the stop.
        """
        s = self._settings
        return int(2 * (s.proxy_read_timeout_s + s.stop_timeout_s) * 1000)

    async def abandon_hibernation(self, record: SessionRecord, now_ms: int) -> bool:
        """Serve a session again whose hibernation was left half done (its manager died).

        Only one ``hibernating`` for longer than ``stale_after_ms`` at ``now_ms``; else False.

        Its processor, fenced, is unfenced when it still runs; a processor already stopped
        (the state was saved first) leaves the session ``ready`` and lost, which the
        reconciler recovers from that checkpoint and the journal. Both are compare-and-set
        from ``hibernating``: a hibernation that was only slow either finishes first (this
        does nothing) or finds the session ``ready`` and leaves it so. Whether it changed.
        """
        if record.status != SessionStatus.HIBERNATING:
            return False
        if record.status_changed_at > now_ms - self.stale_after_ms:
            return False
        handle = record.handle
        if handle is not None and await self._lifecycle.backend.is_alive(handle):
            return await self._back_to_ready(record.session_id, handle, record)
        result = await self._lifecycle.transition(
            record.session_id, allowed=[SessionStatus.HIBERNATING], to=SessionStatus.READY
        )
        return result.ok

    def _checkpoint_lock(
        self, session_id: str, *, wait: bool
    ) -> contextlib.AbstractAsyncContextManager[bool]:
        """One snapshot at a time per session (see ``store.journal``); held at most a read."""
        ttl_s = self._settings.proxy_read_timeout_s + self._settings.stop_timeout_s
        return self._store.journal.checkpoint_lock(
            session_id, int(ttl_s * 1000), wait_s=ttl_s if wait else 0.0
        )

    async def _save_checkpoint(self, session_id: str, state: ProcessorState) -> int:
        """Save the snapshot, then trim what it holds from the journal; its ``seq``.

        The processor names the ``seq``; an older one's snapshot is opened for it, off the
        event loop (decompressing and scanning a large state would stall every request).
        """
        seq = state.seq
        if seq is None:
            seq = await asyncio.to_thread(snapshot_seq, state.snapshot)
        await self._store.save_snapshot(session_id, state.snapshot)
        await self._store.journal.trim(session_id, seq)
        return seq

    async def checkpoint(self, record: SessionRecord) -> int | None:
        """Snapshot a ``ready`` session's running processor and trim its journal.

        Returns the checkpoint's sequence number, or ``None`` when another checkpoint or a
        hibernation of the session is under way (the next pass tries again), or when the
        session's epoch moved on meanwhile (``record``'s processor was replaced: nothing saved).
        """
        if record.status != SessionStatus.READY or not record.endpoint:
            return None
        async with self._checkpoint_lock(record.session_id, wait=False) as taken:
            if not taken:
                return None
            state = await self._processors.get_state(
                record.endpoint, processor_id=record.processor_id, epoch=record.epoch
            )
            # A recovery may have replaced the processor while it answered (one that came back
            # after its node was cut off): its state is not the session's any more.
            route = await self._store.route(record.session_id)
            if route is None or route.epoch != record.epoch:
                return None
            seq = await self._save_checkpoint(record.session_id, state)
        self._metrics.checkpoints.inc()
        return seq

    async def _back_to_ready(
        self, session_id: str, handle: ProcessorHandle, record: SessionRecord
    ) -> bool:
        """A hibernation that failed: lift the fence (if it went up) and serve again."""
        try:
            await self._processors.unfence(
                handle.endpoint, processor_id=record.processor_id, epoch=record.epoch
            )
        except KatoError:
            log.warning(
                "could not lift the fence after a failed hibernation",
                extra={"session_id": session_id},
                exc_info=True,
            )
        result = await self._lifecycle.transition(
            session_id, allowed=[SessionStatus.HIBERNATING], to=SessionStatus.READY
        )
        return result.ok

    async def restore(self, record: SessionRecord) -> SessionRecord | None:
        """Start a new processor for a ``hibernated`` session and load its snapshot into it.

        Waits its turn for a start slot (``MAX_CONCURRENT_STARTS``, shared with creates).
        Returns the ``ready`` record, or ``None`` when another task is already restoring it.
        On failure the session goes back to ``hibernated`` (snapshot kept) and the error is
        raised; ``StartsBusy`` (503) when no slot came within the start timeout.
        """
        epoch = await self._claim_start(
            record.session_id,
            kind="restore",
            slot_s=self._settings.start_timeout_s + self._settings.stop_timeout_s,
            allowed=[SessionStatus.HIBERNATED],
        )
        if epoch is None:
            return None
        return await self._restart(record, epoch, time.perf_counter())

    async def recover(
        self, record: SessionRecord, *, event: str | None = None
    ) -> SessionRecord | None:
        """Replace a ``ready`` session's vanished processor, from its snapshot if any.

        For the reconciler; waits its turn for a start slot like a restore. Returns the ready
        record, or ``None`` when the status changed meanwhile. Why the processor went
        (``event``, asked of the backend when not given) is recorded on the session.
        """
        if event is None:
            event = await self.exits.event(record)
        epoch = await self._claim_start(
            record.session_id,
            kind="recover",
            slot_s=self._settings.start_timeout_s + self._settings.stop_timeout_s,
            allowed=[SessionStatus.READY],
            only_if_ref=record.ref,
            fields={
                "backend": "",
                "ref": "",
                "endpoint": "",
                "node": "",
                **self.exits.fields(record, event),
            },
            idle_deadline="remove",
        )
        if epoch is None:
            return None
        self.exits.noted(record, event)
        old = record.handle
        if old is not None:
            # Lost is not always gone: a processor on a node cut off from the swarm keeps
            # running. Its removal is asked for before the replacement starts (the engine
            # carries it out when the node is back); none is ever routed to again either way.
            try:
                await self._lifecycle.stop(old)
            except Exception:  # the node may be unreachable: never block the recovery
                log.info("lost processor not removed yet", extra={"session_id": record.session_id})
        return await self._restart(record, epoch, time.perf_counter())

    async def _claim_start(
        self, session_id: str, *, kind: str, slot_s: float, **change: Any
    ) -> int | None:
        """Wait in line for a start slot (``StartGate``), then CAS the session to ``starting``.

        The same script bumps the session's epoch: from then on no processor it had is
        trusted (``SessionRecord.epoch``). Returns the new epoch, the new processor's; ``None``
        when the session left ``change["allowed"]`` or another task is starting it.
        Raises ``StartsBusy`` (503) when no slot came within the start timeout.
        """
        slot = await self._starts.wait_for_slot(
            session_id,
            kind=kind,
            allowed=change["allowed"],
            slot_s=slot_s,
            only_if_ref=change.get("only_if_ref"),
        )
        if slot is None:
            return None
        claimed = await self._lifecycle.transition(
            session_id, to=SessionStatus.STARTING, start_slot=slot, bump_epoch=True, **change
        )
        if not claimed.ok:
            await self._starts.release(session_id)
            return None
        return claimed.epoch

    async def _restart(self, record: SessionRecord, epoch: int, began: float) -> SessionRecord:
        lifecycle = self._lifecycle
        handle: ProcessorHandle | None = None
        record = msgspec.structs.replace(record, epoch=epoch)  # the secret the new one gets
        try:
            handle = await lifecycle.launch(record)
            replayed = await self._load(record, handle.endpoint)
        except KatoError:
            if handle is not None:
                await lifecycle.stop(handle)
            # Back to hibernated (snapshot kept), on the usual hibernation clock; unless this
            # start was given up meanwhile (``abandon_start`` did that) and maybe claimed again.
            await lifecycle.to_hibernated(
                record.session_id, allowed=[SessionStatus.STARTING], only_if_epoch=epoch
            )
            raise
        try:
            ready = await lifecycle.mark_ready(record, handle)
        except SessionConflict as exc:
            # Given up while it ran (it outlived its slot): the session is hibernated again,
            # journal and checkpoint intact, and its next request restores it.
            raise SessionNotReady(
                "the session's restart outlived its start slot and was given up; retry",
                session_id=record.session_id,
            ) from exc
        if replayed and self.on_replayed is not None:
            self.on_replayed(record.session_id)
        self._metrics.restores.inc()
        self._metrics.restore_duration.observe(time.perf_counter() - began)
        log.info("session restored", extra={"session_id": record.session_id, "replayed": replayed})
        return ready

    async def _load(self, record: SessionRecord, endpoint: str) -> int:
        """Checkpoint, then the journal's later entries in order; how many were replayed."""
        session_id, pid = record.session_id, record.processor_id
        snapshot = await self._store.load_snapshot(session_id)
        seq = 0
        if snapshot is not None:
            seq = await asyncio.to_thread(snapshot_seq, snapshot)
            await self._processors.put_state(
                endpoint, snapshot, seq=seq, processor_id=pid, epoch=record.epoch
            )
        if self._settings.journal != "on":
            return 0
        if self.before_replay is not None:
            await self.before_replay(session_id)
        entries = await self._store.journal.entries_after(session_id, seq)
        for entry in entries:
            await self._processors.replay(
                endpoint,
                entry.seq,
                entry.method,
                entry.path,
                entry.query,
                entry.body,
                processor_id=pid,
                epoch=record.epoch,
                unique_id=entry.unique_id,
            )
        return len(entries)

    async def recoverable(self, session_id: str) -> bool:
        """Whether a lost processor's state can be rebuilt: a checkpoint, or the journal on.

        With the journal on, a session with neither snapshot nor entries never had an
        acknowledged write since it started: a fresh processor is its exact state. Unless its
        processor is of an image older than the journal (writes without ``X-Kato-Seq``).
        """
        if await self._store.has_snapshot(session_id):
            return True
        return self._settings.journal == "on" and not await self._store.journal.unnumbered(
            session_id
        )

    async def check_out_of_memory(self, session_id: str, since_ms: int) -> None:
        """Raise ``ProcessorOutOfMemory`` if the processor hit its memory limit since ``since_ms``.

        ``since_ms`` is when a refused request was sent. Whoever saw the exit first (the crash
        watch, another request) recovered the session and recorded the event; this request was
        in flight then and may well be why, so it is answered 507 instead of being sent again
        to the new processor.
        """
        record = await self._store.get(session_id)
        if (
            record is not None
            and record.last_event == PROCESSOR_OUT_OF_MEMORY
            and record.last_event_at >= since_ms
        ):
            raise self.exits.error(record, recovered=True)

    async def recover_lost(self, session_id: str, endpoint: str, *, by: str = "proxy") -> bool:
        """A proxied request could not reach ``endpoint``: recover the session now if it is lost.

        ``by`` says who noticed (the ``kato_recoveries`` label): the proxy, or the backend
        seeing the processor exit.

        Returns True when the request is worth sending again (the session was recovered here,
        is being recovered or restored elsewhere, or already has another processor); False when
        the processor still runs (a real error) or the session cannot be recovered. Raises
        ``ProcessorOutOfMemory`` when the processor exited at its memory limit: the request
        may well be why, so it is not sent again (the session is recovered all the same).
        """
        record = await self._store.get(session_id)
        if record is None:
            return False
        if record.status != SessionStatus.READY:
            return record.status in (SessionStatus.STARTING, SessionStatus.HIBERNATED)
        handle = record.handle
        if record.endpoint != endpoint:
            return True
        if handle is None or await self._lifecycle.backend.is_alive(handle):
            return False
        event = await self.exits.event(record)
        if not await self.recoverable(session_id):
            if event is not None:
                raise self.exits.error(record, recovered=False)
            return False
        log.info("processor lost; recovering", extra={"session_id": session_id})
        recovered = await self.recover(record, event=event)
        if recovered is not None:
            self._metrics.recoveries.labels(by=by).inc()
        if event is not None:  # recovered here, or by whoever claimed it first
            raise self.exits.error(record, recovered=True)
        return True
