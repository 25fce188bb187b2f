"""The start queue in a real Redis, on a clock the test moves: order, priority, crashes.

Restores and recoveries claim start slots in arrival order (``claim_start.lua``); waiting ones
go before new creates (``reserve.lua``); a waiter or a slot whose manager died stops counting.
"""

from __future__ import annotations

import pytest

from session_manager.errors import CapacityExceeded
from session_manager.models import SessionRecord, SessionStatus
from session_manager.store import Capacity, SessionStore
from session_manager.store.start_queue import WAITER_LEASE_MS, StartClaim
from tests.support.timing import ManualClock

LIMIT = 1
SLOT_MS = 10_000
CAPACITY = Capacity(max_sessions=99, max_per_user=99, max_starts=LIMIT, start_timeout_ms=SLOT_MS)
ROOMY = Capacity(max_sessions=99, max_per_user=99, max_starts=99, start_timeout_ms=SLOT_MS)


def new_record(session_id: str, clock: ManualClock) -> SessionRecord:
    return SessionRecord.starting(
        session_id, "alice", clock.now_ms(), idle_timeout_s=60, max_age_s=3600
    )


async def mark_ready(store: SessionStore, session_id: str, ref: str = "") -> None:
    """``starting -> ready`` (on processor ``ref``): the start slot is given back."""
    done = await store.transition(
        session_id,
        allowed=[SessionStatus.STARTING],
        to=SessionStatus.READY,
        fields={"ref": ref},
        start_slot="remove",
    )
    assert done.ok


async def hibernated(store: SessionStore, clock: ManualClock, *session_ids: str) -> None:
    """Sessions that started, then hibernated (no slot held)."""
    for session_id in session_ids:
        await store.reserve(new_record(session_id, clock), ROOMY)
        await mark_ready(store, session_id)
        moved = await store.transition(
            session_id, allowed=[SessionStatus.READY], to=SessionStatus.HIBERNATED
        )
        assert moved.ok


async def claim(store: SessionStore, session_id: str, arrival_ms: int) -> StartClaim:
    result, _ = await store.claim_start(
        session_id,
        allowed=[SessionStatus.HIBERNATED],
        arrival_ms=arrival_ms,
        slot_ms=SLOT_MS,
        max_starts=LIMIT,
    )
    return result


async def start(store: SessionStore, session_id: str) -> None:
    """What a restore does with its claimed slot: ``hibernated -> starting``."""
    moved = await store.transition(
        session_id, allowed=[SessionStatus.HIBERNATED], to=SessionStatus.STARTING
    )
    assert moved.ok


async def test_slots_go_to_the_oldest_waiter_whoever_asks_first(
    store: SessionStore, clock: ManualClock
) -> None:
    await hibernated(store, clock, "a", "b", "c")
    now = clock.now_ms()
    await store.reserve(new_record("busy", clock), CAPACITY)  # the one slot is taken
    assert await claim(store, "c", now + 3) == StartClaim("queued", 0)
    assert await claim(store, "b", now + 2) == StartClaim("queued", 0)
    assert await claim(store, "a", now + 1) == StartClaim("queued", 0)
    assert await claim(store, "c", now + 3) == StartClaim("queued", 2)
    assert await store.starts_waiting() == 3
    await mark_ready(store, "busy")
    # c asks first and b next, but a arrived first: only a may take the free slot.
    assert await claim(store, "c", now + 3) == StartClaim("queued", 2)
    assert await claim(store, "b", now + 2) == StartClaim("queued", 1)
    assert (await claim(store, "a", now + 1)).verdict == "claimed"
    await start(store, "a")
    assert await claim(store, "b", now + 2) == StartClaim("queued", 0)
    await mark_ready(store, "a")
    assert (await claim(store, "b", now + 2)).verdict == "claimed"
    assert (await store.counts())["starts"] == 1


async def test_a_waiting_restore_goes_before_a_new_create(
    store: SessionStore, clock: ManualClock
) -> None:
    await hibernated(store, clock, "a")
    await store.reserve(new_record("busy", clock), CAPACITY)
    assert (await claim(store, "a", clock.now_ms())).verdict == "queued"
    await mark_ready(store, "busy")  # a slot is free, but "a" is waiting for it
    with pytest.raises(CapacityExceeded) as refused:
        await store.reserve(new_record("newcomer", clock), CAPACITY)
    assert refused.value.details["limit"] == "MAX_CONCURRENT_STARTS"
    assert (await claim(store, "a", clock.now_ms())).verdict == "claimed"


async def test_a_waiter_whose_manager_died_leaves_the_line_when_its_lease_runs_out(
    store: SessionStore, clock: ManualClock
) -> None:
    await hibernated(store, clock, "dead", "alive")
    await store.reserve(new_record("busy", clock), CAPACITY)
    now = clock.now_ms()
    assert (await claim(store, "dead", now)).verdict == "queued"  # then its manager dies
    assert (await claim(store, "alive", now + 1)).verdict == "queued"
    await mark_ready(store, "busy")
    clock.advance(WAITER_LEASE_MS / 2000)
    assert await claim(store, "alive", now + 1) == StartClaim("queued", 1)
    clock.advance(WAITER_LEASE_MS / 2000 + 0.001)  # "dead" stopped renewing its lease
    assert (await claim(store, "alive", now + 1)).verdict == "claimed"
    assert await store.starts_waiting() == 0


async def test_a_claim_whose_manager_died_before_starting_it_expires_for_the_next_claimant(
    store: SessionStore, clock: ManualClock
) -> None:
    await hibernated(store, clock, "a")
    now = clock.now_ms()
    assert (await claim(store, "a", now)).verdict == "claimed"  # then that manager dies
    assert await claim(store, "a", now) == StartClaim("queued", 0)
    clock.advance(SLOT_MS / 1000 + 0.001)
    assert (await claim(store, "a", now)).verdict == "claimed"


async def test_a_slot_whose_manager_died_expires_for_waiters(
    store: SessionStore, clock: ManualClock
) -> None:
    await hibernated(store, clock, "a")
    await store.reserve(new_record("dies-mid-start", clock), CAPACITY)
    assert (await claim(store, "a", clock.now_ms())).verdict == "queued"
    clock.advance(SLOT_MS / 1000 + 0.001)
    assert (await claim(store, "a", clock.now_ms())).verdict == "claimed"


async def test_a_session_started_elsewhere_or_ended_is_not_started_again(
    store: SessionStore, clock: ManualClock
) -> None:
    await hibernated(store, clock, "a", "b")
    now = clock.now_ms()
    assert (await claim(store, "a", now)).verdict == "claimed"  # by one replica ...
    assert await claim(store, "a", now) == StartClaim("queued", 0)  # ... another waits
    await start(store, "a")
    assert await claim(store, "a", now) == StartClaim("moved", 0)  # and does not start it
    await store.end("b", "deleted", 60)
    assert await claim(store, "b", now) == StartClaim("moved", 0)
    assert await store.starts_waiting() == 0


async def test_a_recovery_that_comes_after_another_replaced_the_processor_claims_nothing(
    store: SessionStore, clock: ManualClock
) -> None:
    """Two recoveries of one lost processor (exit watcher and reconciler), the second late.

    The first restarts the session so fast that the second's next poll finds it ready again,
    on the new processor. Before: that poll claimed a slot it then had to give back (and
    counted a start that never happened); now it is ``moved``, like one that saw ``starting``.
    """
    await store.reserve(new_record("a", clock), ROOMY)
    await mark_ready(store, "a", ref="lost")

    async def recovery_claims() -> StartClaim:
        result, _ = await store.claim_start(
            "a",
            allowed=[SessionStatus.READY],
            arrival_ms=clock.now_ms(),
            slot_ms=SLOT_MS,
            max_starts=LIMIT,
            only_if_ref="lost",
        )
        return result

    assert (await recovery_claims()).verdict == "claimed"  # the first recovery
    moved = await store.transition(
        "a",
        allowed=[SessionStatus.READY],
        to=SessionStatus.STARTING,
        only_if_ref="lost",
        fields={"ref": ""},
    )
    assert moved.ok
    await mark_ready(store, "a", ref="new")
    assert await recovery_claims() == StartClaim("moved", 0)  # the late one
    assert (await store.counts())["starts"] == 0
    assert await store.starts_waiting() == 0


async def test_a_claimed_slot_that_is_released_frees_the_limit(
    store: SessionStore, clock: ManualClock
) -> None:
    await hibernated(store, clock, "a")
    assert (await claim(store, "a", clock.now_ms())).verdict == "claimed"
    assert (await store.counts())["starts"] == 1
    await store.release_start("a")
    assert (await store.counts())["starts"] == 0
    await store.reserve(new_record("newcomer", clock), CAPACITY)
