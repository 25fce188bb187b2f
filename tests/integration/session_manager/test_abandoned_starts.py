"""Starts whose slot ran out: a first start ends, a restart's session keeps its acknowledged writes.

A manager that dies (or stalls past its slot) mid-start leaves the session ``starting`` with an
expired start slot. A first start acknowledged nothing, so ending it (``start_failed``) loses
nothing; a restore or recovery is a session with acknowledged writes in its checkpoint and
journal, so the reconciler puts it back to ``hibernated`` and its next request restores them.
Real processors and Redis; the dying manager is the claim a restart makes, with nothing after it
(what a SIGKILL right after the claim leaves: ``tests/chaos/test_stalled_restart.py`` does it to a
whole manager process).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from session_manager.errors import SessionNotReady
from session_manager.models import SessionRecord, SessionStatus
from session_manager.store import Capacity
from tests.support.manager import (
    Manager,
    SettingsFactory,
    StartManager,
    auth,
    observed,
    status_of,
)
from tests.support.pids import pid_running, processes_of
from tests.support.timing import ManualClock, wait_for


async def _hibernated(manager: Manager, session: dict[str, Any]) -> None:
    reply = await manager.client.post(
        f"/admin/sessions/{session['session_id']}/hibernate", headers=manager.admin
    )
    assert reply.status_code == 200, reply.text


async def _stm(manager: Manager, session: dict[str, Any]) -> Any:
    reply = await manager.client.get(f"/session/{session['session_id']}/stm", headers=auth(session))
    assert reply.status_code == 200, reply.text
    return reply.json()["stm"]


async def _record(manager: Manager, session_id: str) -> SessionRecord:
    record: SessionRecord | None = await manager.app.state.store.get(session_id)
    assert record is not None
    return record


async def _reconciled(manager: Manager) -> None:
    """A reconciler pass. The manager's own pass at start-up may be the one that acts on what
    a test set up (its timer is an hour), so tests look at the sessions, not at this report."""
    report = await manager.app.state.reconciler.reconcile_once()
    assert report.failed == {}


def _processors(manager: Manager, session_id: str) -> int:
    """Running processors of ``session_id`` (a leaked one would show up here)."""
    return list(processes_of(manager.app.state.settings.manager_id).values()).count(session_id)


async def test_a_recovery_whose_manager_died_after_its_claim_is_hibernated_with_every_write(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    manager = await start_manager(make_settings(orphan_grace_s=0, reconcile_interval_s=3600))
    session = await manager.create()
    session_id = session["session_id"]
    await observed(manager, session, "a")
    await _hibernated(manager, session)  # the checkpoint holds "a"
    await observed(manager, session, "b", "c")  # restored; "b" and "c" are in the journal only
    record = await _record(manager, session_id)
    hibernation = manager.app.state.sessions._hibernation
    # A recovery claimed with a slot that has run out by the time the reconciler looks, and
    # nothing after the claim: its manager died there.
    epoch = await hibernation._claim_start(
        session_id,
        kind="recover",
        slot_s=0.001,
        allowed=[SessionStatus.READY],
        only_if_ref=record.ref,
        fields={"backend": "", "ref": "", "endpoint": "", "node": ""},
        idle_deadline="remove",
    )
    assert epoch == record.epoch + 1
    await asyncio.sleep(0.01)

    await _reconciled(manager)

    given_up = await _record(manager, session_id)
    assert given_up.status == SessionStatus.HIBERNATED
    assert given_up.epoch == epoch + 1  # whatever the dead start brought up is fenced
    assert (await manager.app.state.store.start_deadline(session_id)) is None
    # The processor the recovery replaced is an orphan now: the next pass removes it.
    await _reconciled(manager)
    assert not pid_running(int(record.ref))
    # Its next request restores it: the checkpoint, then the journal's entries after it.
    assert await _stm(manager, session) == [["a"], ["b"], ["c"]]
    assert (await status_of(manager, session))["status"] == "ready"
    assert _processors(manager, session_id) == 1


async def test_a_restart_given_up_while_it_ran_cannot_take_the_session_back(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    """The start outlived its slot (a loaded machine) and was given up, then claimed again."""
    manager = await start_manager(make_settings(reconcile_interval_s=3600))
    session = await manager.create()
    session_id = session["session_id"]
    await observed(manager, session, "a", "b")
    await _hibernated(manager, session)
    record = await _record(manager, session_id)
    hibernation = manager.app.state.sessions._hibernation

    async def claim(slot_s: float) -> int:
        epoch = await hibernation._claim_start(
            session_id, kind="restore", slot_s=slot_s, allowed=[SessionStatus.HIBERNATED]
        )
        assert isinstance(epoch, int)
        return epoch

    slow = await claim(0.001)
    await asyncio.sleep(0.01)
    await _reconciled(manager)
    given_up = await _record(manager, session_id)
    assert (given_up.status, given_up.epoch) == (SessionStatus.HIBERNATED, slow + 1)
    again = await claim(30)  # the next request's restore, claimed before the slow one is done
    assert again == slow + 2

    # The slow start finishes: it may not mark its processor ready over the newer start.
    with pytest.raises(SessionNotReady):
        await hibernation._restart(record, slow, time.perf_counter())
    assert _processors(manager, session_id) == 0  # it stopped what it started
    claimed = await _record(manager, session_id)
    assert (claimed.status, claimed.epoch, claimed.ref) == (SessionStatus.STARTING, again, "")

    ready = await hibernation._restart(record, again, time.perf_counter())
    assert (ready.status, ready.epoch) == (SessionStatus.READY, again)
    assert await _stm(manager, session) == [["a"], ["b"]]
    assert _processors(manager, session_id) == 1


async def test_a_first_start_whose_manager_died_is_ended_as_start_failed(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    manager = await start_manager(make_settings(reconcile_interval_s=3600))
    now = manager.app.state.clock.now_ms()
    abandoned = SessionRecord.starting("f" * 32, "alice", now, idle_timeout_s=900, max_age_s=3600)
    expired = Capacity(max_sessions=10, max_per_user=10, max_starts=10, start_timeout_ms=-1)
    await manager.app.state.store.reserve(abandoned, expired)

    await _reconciled(manager)

    async def ended() -> bool:  # by this pass, or by the start-up one still ending it
        record, tombstone = await manager.app.state.store.lookup("f" * 32)
        return record is None and tombstone is not None

    assert await wait_for(ended, timeout_s=5)
    _, tombstone = await manager.app.state.store.lookup("f" * 32)
    assert tombstone is not None
    assert tombstone.reason == "start_failed"


@pytest.mark.parametrize("processor", ["running", "stopped"])
async def test_a_hibernation_whose_manager_died_mid_way_is_served_again(
    start_manager: StartManager, make_settings: SettingsFactory, clock: ManualClock, processor: str
) -> None:
    """What a manager killed mid-hibernation (a SIGKILL past ``docker stop``'s grace) leaves.

    The session ``hibernating``, its processor fenced; ``stopped``: the state saved, the
    processor stopped, the last transition not made. Before, it stayed so until its max age,
    every request answered 503.
    """
    manager = await start_manager(make_settings(reconcile_interval_s=3600), clock=clock)
    session = await manager.create()
    session_id = session["session_id"]
    await observed(manager, session, "a", "b")
    record = await _record(manager, session_id)
    sessions, processors = manager.app.state.sessions, manager.app.state.processors
    moved = await sessions._lifecycle.transition(
        session_id, allowed=[SessionStatus.READY], to=SessionStatus.HIBERNATING
    )
    assert moved.ok
    pid, epoch = record.processor_id, record.epoch
    assert await processors.fence(record.endpoint, processor_id=pid, epoch=epoch)
    if processor == "stopped":
        state = await processors.get_state(record.endpoint, processor_id=pid, epoch=epoch)
        await sessions._hibernation._save_checkpoint(session_id, state)
        await sessions._lifecycle.stop(record.handle)
    reconciler = manager.app.state.reconciler

    # Not before a live hibernation would have finished.
    assert (await reconciler.reconcile_once()).stale_hibernations_served == []
    assert (await _record(manager, session_id)).status == SessionStatus.HIBERNATING
    clock.advance(sessions._hibernation.stale_after_ms / 1000 + 1)
    await _reconciled(manager)

    served = await _record(manager, session_id)
    assert served.status == SessionStatus.READY
    if processor == "stopped":  # recovered from the checkpoint and the journal
        assert served.ref != record.ref
    else:  # unfenced
        assert served.ref == record.ref
    assert await _stm(manager, session) == [["a"], ["b"]]
    await observed(manager, session, "c")  # unfenced (or a new processor): writes go through
    assert await _stm(manager, session) == [["a"], ["b"], ["c"]]
    assert _processors(manager, session_id) == 1
