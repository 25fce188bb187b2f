"""Restores and recoveries obey MAX_CONCURRENT_STARTS: one fair line, on real processors.

A quiet night hibernates many sessions; in the morning their users come back at once. With the
limit at 2, never more than 2 of them may be starting (by the store's statuses and by the
processor processes alive), every user still gets an answer with their state, and the first to
come back are served first.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Sequence
from typing import Any

import httpx
import msgspec

from session_manager.models import SessionStatus
from session_manager.processor_secrets import ProcessorSecrets
from session_manager.store import Keys, SessionStore
from tests.support.manager import (
    Manager,
    ManagerProcessFactory,
    SettingsFactory,
    StartManager,
    auth,
    status_of,
)
from tests.support.pids import pid_running, processes_of
from tests.support.timing import wait_for

_SAMPLE_S = 0.005
_SAMPLES_MAX = 40_000


class StartSamples(msgspec.Struct, kw_only=True):
    """What a watcher saw while sessions were coming back."""

    samples: int = 0
    most_starting: int = 0
    most_slots: int = 0
    most_unready_processors: int = 0
    process_samples: int = 0
    first_seen_starting: dict[str, int] = {}
    hibernated_while_full: int = 0


async def watch_starts(
    store: SessionStore, session_ids: Sequence[str], manager_id: str, stop: asyncio.Event
) -> StartSamples:
    """Sample the store's counts and the live processors until ``stop`` (bounded)."""
    seen = StartSamples()
    started = (SessionStatus.STARTING, SessionStatus.READY)
    while not stop.is_set() and seen.samples < _SAMPLES_MAX:
        seen.samples += 1
        counts = await store.counts()
        seen.most_starting = max(seen.most_starting, counts[SessionStatus.STARTING])
        seen.most_slots = max(seen.most_slots, counts["starts"])
        records = await store.get_many(session_ids)
        for session_id, record in zip(session_ids, records, strict=True):
            if record is not None and record.status in started:
                seen.first_seen_starting.setdefault(session_id, seen.samples)
        if counts[SessionStatus.STARTING] >= 2:
            seen.hibernated_while_full = max(
                seen.hibernated_while_full,
                sum(r is not None and r.status == SessionStatus.HIBERNATED for r in records),
            )
        if seen.samples % 4 == 0:
            # Processes first, statuses after: a processor whose session was starting when the
            # process was seen can only be ready by now, never the other way round.
            processes = await asyncio.to_thread(processes_of, manager_id)
            owners = await store.get_many(sid for sid in processes.values() if sid)
            unready = sum(r is not None and r.status != SessionStatus.READY for r in owners)
            seen.most_unready_processors = max(seen.most_unready_processors, unready)
            seen.process_samples += 1
        await asyncio.sleep(_SAMPLE_S)
    # A start that ended just before ``stop`` may have fallen between two samples: seen now.
    for session_id, record in zip(session_ids, await store.get_many(session_ids), strict=True):
        if record is not None and record.status in started:
            seen.first_seen_starting.setdefault(session_id, seen.samples + 1)
    return seen


async def remembering(manager: Manager, word: str) -> dict[str, Any]:
    """A session whose STM holds ``word``."""
    session = await manager.create()
    reply = await manager.client.post(
        f"/session/{session['session_id']}/observe", json={"strings": [word]}, headers=auth(session)
    )
    assert reply.status_code == 200, reply.text
    return session


async def test_twelve_sessions_woken_at_once_start_two_at_a_time_first_come_first_served(
    start_manager: StartManager, make_settings: SettingsFactory, manager_id: str
) -> None:
    settings = make_settings(max_concurrent_starts=2, reap_interval_s=3600)
    replicas = [await start_manager(settings), await start_manager(settings)]
    first = replicas[0]
    store: SessionStore = first.app.state.store
    sessions = [await remembering(first, f"word{i}") for i in range(12)]
    session_ids = [s["session_id"] for s in sessions]
    for session_id in session_ids:
        assert await first.app.state.sessions.hibernate(session_id)
    assert processes_of(manager_id) == {}

    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_starts(store, session_ids, manager_id, stop))

    async def wake(i: int) -> Any:
        replica = replicas[i % 2]  # users come back through both replicas
        return await replica.client.get(f"/session/{session_ids[i]}/stm", headers=auth(sessions[i]))

    waking = []
    for i in range(12):  # in this order, 50 ms apart: the herd of a morning
        waking.append(asyncio.create_task(wake(i)))
        await asyncio.sleep(0.05)

    replies = await asyncio.gather(*waking)
    stop.set()
    seen = await watcher

    assert seen.most_starting <= 2, seen
    assert seen.most_slots <= 2, seen
    assert seen.most_unready_processors <= 2, seen
    assert seen.process_samples >= 5, seen  # processes were looked at during the herd
    assert seen.hibernated_while_full >= 4, seen  # a real herd: many waited at once
    assert [r.status_code for r in replies] == [200] * 12, [r.text for r in replies]
    assert [r.json()["stm"] for r in replies] == [[[f"word{i}"]] for i in range(12)]
    # First come, first served: nobody is overtaken by more than the two slots' worth.
    order = [seen.first_seen_starting[sid] for sid in session_ids]
    overtaken = [sum(later < mine for later in order[i + 1 :]) for i, mine in enumerate(order)]
    assert max(overtaken) <= 2, (order, overtaken)
    metrics = "".join([(await r.client.get("/metrics")).text for r in replicas])
    assert metrics.count('kato_start_wait_seconds_count{kind="restore",outcome="claimed"}') == 2
    assert "kato_start_queue_waiting 0.0" in metrics
    assert await store.starts_waiting() == 0


async def hold_a_start_slot(store: SessionStore, hold_s: float) -> float:
    """What a manager killed mid-start leaves: a start slot nobody releases. Its expiry (ms)."""
    until = store.clock.now_ms() + int(hold_s * 1000)
    await store.redis.zadd(Keys(store.prefix).starts, {"a-start-of-a-dead-manager": until})
    return until


async def test_a_recovery_waits_for_a_start_slot(
    start_manager: StartManager, make_settings: SettingsFactory, manager_id: str
) -> None:
    manager = await start_manager(make_settings(max_concurrent_starts=1, reconcile_interval_s=0.3))
    store: SessionStore = manager.app.state.store
    session = await remembering(manager, "kept")
    sid = session["session_id"]
    record = await status_of(manager, session)
    # A checkpoint kept from earlier, then the only slot is taken and the processor dies.
    async with httpx.AsyncClient(trust_env=False) as client:
        secret = ProcessorSecrets(manager.app.state.settings.processor_secret_key)
        own = secret.headers(session["session_id"])  # the manager's own call, as it makes it
        state = (await client.get(f"{record['endpoint']}/state", headers=own)).content
    await store.save_snapshot(sid, state)
    slot_free_at = await hold_a_start_slot(store, hold_s=3)
    old_pid = int(record["ref"])
    os.kill(old_pid, signal.SIGKILL)
    while pid_running(old_pid):
        await asyncio.sleep(0.01)

    started_at: list[float] = []

    async def replaced() -> bool:
        current = await store.get(sid)
        processes = await asyncio.to_thread(processes_of, manager_id)
        new = [pid for pid, owner in processes.items() if owner == sid and pid != old_pid]
        moved = current is None or current.status != SessionStatus.READY
        if (moved or new) and not started_at:
            started_at.append(time.time() * 1000)
        return bool(new) and current is not None and current.status == SessionStatus.READY

    assert await wait_for(replaced, timeout_s=30, every_s=0.02)
    assert started_at
    assert started_at[0] >= slot_free_at, (started_at, slot_free_at)
    stm = await manager.client.get(f"/session/{sid}/stm", headers=auth(session))
    assert stm.json()["stm"] == [["kept"]]
    metrics = (await manager.client.get("/metrics")).text
    assert 'kato_start_wait_seconds_count{kind="recover",outcome="claimed"} 1.0' in metrics


async def test_a_restore_that_gets_no_slot_answers_503_then_the_dead_slot_expires(
    start_manager: StartManager, make_settings: SettingsFactory, manager_id: str
) -> None:
    manager = await start_manager(
        make_settings(max_concurrent_starts=1, start_timeout_s=4, stop_timeout_s=1)
    )
    store: SessionStore = manager.app.state.store
    session = await remembering(manager, "patient")
    sid = session["session_id"]
    assert await manager.app.state.sessions.hibernate(sid)
    slot_free_at = await hold_a_start_slot(store, hold_s=6)

    busy = await manager.client.get(f"/session/{sid}/stm", headers=auth(session))
    assert busy.status_code == 503, busy.text
    assert busy.json()["error"]["code"] == "STARTS_BUSY"
    assert busy.headers["Retry-After"] == "1"
    assert (await status_of(manager, session))["status"] == "hibernated"
    assert processes_of(manager_id) == {}
    assert await store.starts_waiting() == 0  # it left the line

    async def slot_expired() -> bool:
        return time.time() * 1000 > slot_free_at

    assert await wait_for(slot_expired, timeout_s=10)
    later = await manager.client.get(f"/session/{sid}/stm", headers=auth(session))
    assert later.status_code == 200, later.text
    assert later.json()["stm"] == [["patient"]]


async def test_a_manager_killed_while_its_users_wait_in_line_does_not_block_the_line(
    start_manager: StartManager,
    make_settings: SettingsFactory,
    manager_process: ManagerProcessFactory,
) -> None:
    settings = make_settings(max_concurrent_starts=1, reap_interval_s=3600)
    survivor = await start_manager(settings)
    doomed = manager_process(settings)
    doomed_client = await doomed.start()
    store: SessionStore = survivor.app.state.store
    first, second = [await remembering(survivor, word) for word in ("first", "second")]
    for session in (first, second):
        assert await survivor.app.state.sessions.hibernate(session["session_id"])
    await hold_a_start_slot(store, hold_s=2)
    waiting = asyncio.create_task(
        doomed_client.client.get(f"/session/{first['session_id']}/stm", headers=auth(first))
    )

    async def in_line() -> bool:
        return await store.starts_waiting() == 1

    assert await wait_for(in_line, timeout_s=10, every_s=0.02)
    doomed.kill()  # its user is first in line, and will never poll again
    with contextlib.suppress(httpx.TransportError):
        await waiting
    await doomed_client.aclose()

    served = await survivor.client.get(f"/session/{second['session_id']}/stm", headers=auth(second))
    assert served.status_code == 200, served.text
    assert served.json()["stm"] == [["second"]]
    # The first user, coming back through the survivor, is served too.
    again = await survivor.client.get(f"/session/{first['session_id']}/stm", headers=auth(first))
    assert again.json()["stm"] == [["first"]]
