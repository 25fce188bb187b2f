"""The warm pool (issue 15): sessions take pre-started processors, which nobody else can reach.

Real managers, real processor processes; the autouse leak check of this package holds with a
pool too (a pool is drained when its manager stops, and adopted or removed after a kill -9).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import httpx

from session_manager.backends.base import is_pool_id
from session_manager.processor_secrets import ProcessorSecrets
from tests.support.manager import (
    ADMIN,
    Manager,
    ManagerProcessFactory,
    SettingsFactory,
    StartManager,
    auth,
    pool_full,
    pool_stats,
    status_of,
)
from tests.support.pids import pid_running, processes_of

_WAIT_S = 60


def _members(manager_id: str) -> dict[int, str]:
    """Pid -> pool id of this manager's processes started for the pool (claimed ones too)."""
    return {
        pid: str(marker) for pid, marker in processes_of(manager_id).items() if is_pool_id(marker)
    }


async def _observe(manager: Manager, session: dict[str, Any], symbol: str) -> httpx.Response:
    return await manager.client.post(
        f"/session/{session['session_id']}/observe",
        json={"strings": [symbol]},
        headers=auth(session),
    )


async def test_a_create_claims_a_pooled_processor_and_the_pool_refills(
    start_manager: StartManager, make_settings: SettingsFactory, manager_id: str
) -> None:
    manager = await start_manager(make_settings(warm_pool_size=2))
    await pool_full(manager, 2)
    waiting = _members(manager_id)
    assert len(waiting) == 2

    session = await manager.create(genes={"recall_threshold": 0.3})
    record = await status_of(manager, session)
    assert int(record["ref"]) in waiting  # a pooled processor, not a new one
    assert (await _observe(manager, session, "hello")).status_code == 200
    gene = await manager.client.get(
        f"/session/{session['session_id']}/gene/recall_threshold", headers=auth(session)
    )
    assert gene.json()["gene_value"] == 0.3

    pool = await pool_full(manager, 2)
    assert (pool["hits"], pool["misses"]) == (1, 0)
    metrics = (await manager.client.get("/metrics")).text
    assert 'kato_warm_pool_claims_total{outcome="hit"} 1.0' in metrics


async def test_pooled_processors_are_unreachable_before_their_claim(
    start_manager: StartManager, make_settings: SettingsFactory, manager_id: str
) -> None:
    manager = await start_manager(make_settings(warm_pool_size=2))
    await pool_full(manager, 2)
    session = await manager.create()
    await pool_full(manager, 2)
    key = manager.app.state.settings.processor_secret_key
    waiting = manager.app.state.pool.waiting()
    endpoints = {m.ref: m.endpoint for m in waiting}
    members = {int(m.ref): str(m.session_id) for m in waiting}
    assert len(members) == 2
    assert set(members.values()) <= set(_members(manager_id).values())

    # No session routes to them: the admin listing knows only the one session's processor.
    listing = (await manager.client.get("/admin/sessions", headers=ADMIN)).json()["sessions"]
    assert [s["session_id"] for s in listing] == [session["session_id"]]
    assert {str(s.get("ref")) for s in listing}.isdisjoint(endpoints)
    async with httpx.AsyncClient(trust_env=False) as client:
        for pid, pool_id in members.items():
            endpoint = endpoints[str(pid)]
            # A local process without the secret gets nothing ...
            assert (await client.get(f"{endpoint}/stm")).status_code == 401
            # ... and a session's secret opens nothing on them either.
            other = ProcessorSecrets(key).headers(session["session_id"])
            assert (await client.get(f"{endpoint}/stm", headers=other)).status_code == 401
            # Even the manager's own pool secret reaches nothing but the claim.
            mine = ProcessorSecrets(key).headers(pool_id)
            refused = await client.get(f"{endpoint}/stm", headers=mine)
            assert refused.status_code == 409
            assert refused.json()["error"]["code"] == "NOT_CLAIMED"


async def test_a_processor_is_never_reused_after_its_session_ends(
    start_manager: StartManager, make_settings: SettingsFactory, manager_id: str
) -> None:
    manager = await start_manager(make_settings(warm_pool_size=1))
    await pool_full(manager, 1)
    first = await manager.create()
    first_pid = int((await status_of(manager, first))["ref"])
    assert (await _observe(manager, first, "secret-of-first")).status_code == 200
    deleted = await manager.client.delete(f"/session/{first['session_id']}", headers=auth(first))
    assert deleted.status_code == 204
    assert not pid_running(first_pid)  # stopped with its session, not returned to the pool

    await pool_full(manager, 1)
    second = await manager.create()
    second_pid = int((await status_of(manager, second))["ref"])
    assert second_pid != first_pid
    stm = await manager.client.get(f"/session/{second['session_id']}/stm", headers=auth(second))
    assert stm.json()["stm"] == []
    assert (await pool_stats(manager))["hits"] == 2


async def test_restores_and_recoveries_take_from_the_pool(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    manager = await start_manager(make_settings(warm_pool_size=1))
    await pool_full(manager, 1)
    session = await manager.create()
    sid = session["session_id"]
    assert (await _observe(manager, session, "kept")).status_code == 200
    assert await manager.app.state.sessions.hibernate(sid)
    await pool_full(manager, 1)

    stm = await manager.client.get(f"/session/{sid}/stm", headers=auth(session))  # restores
    assert stm.json()["stm"] == [["kept"]]
    assert (await pool_stats(manager))["hits"] == 2

    await pool_full(manager, 1)
    os.killpg(int((await status_of(manager, session))["ref"]), signal.SIGKILL)
    stm = await manager.client.get(f"/session/{sid}/stm", headers=auth(session))  # recovers
    assert stm.status_code == 200
    assert stm.json()["stm"] == [["kept"]]
    assert (await pool_stats(manager))["hits"] == 3


async def test_a_burst_larger_than_the_pool_degrades_to_cold_starts(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    manager = await start_manager(make_settings(warm_pool_size=2))
    await pool_full(manager, 2)
    replies = await asyncio.gather(*(manager.create(user_id=f"u{i}") for i in range(6)))
    for session in replies:
        assert (await _observe(manager, session, "x")).status_code == 200
    pool = await pool_full(manager, 2)  # and it refills
    assert pool["hits"] + pool["misses"] == 6
    assert pool["hits"] >= 2
    assert pool["misses"] >= 1


async def test_a_processor_that_died_in_the_pool_is_skipped(
    start_manager: StartManager, make_settings: SettingsFactory, manager_id: str
) -> None:
    manager = await start_manager(make_settings(warm_pool_size=2))
    await pool_full(manager, 2)
    for pid in _members(manager_id):
        os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + _WAIT_S
    while _members(manager_id):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)

    session = await manager.create()  # both claims fail: a cold start, no error
    assert (await _observe(manager, session, "fine")).status_code == 200
    pool = await pool_stats(manager)
    assert pool["claim_failures"] >= 1
    assert pool["misses"] + pool["hits"] == 1


async def test_a_restarted_manager_adopts_the_pool_and_a_stop_drains_it(
    manager_process: ManagerProcessFactory, make_settings: SettingsFactory, manager_id: str
) -> None:
    process = manager_process(make_settings(warm_pool_size=2))
    manager = await process.start()
    await pool_full(manager, 2)
    waiting = _members(manager_id)
    await manager.aclose()
    process.kill()
    assert _members(manager_id) == waiting  # kill -9 leaves them running

    manager = await process.start()
    try:
        pool = await pool_full(manager, 2)
        assert _members(manager_id) == waiting  # the same two, adopted, none started
        assert pool["refilling"] == 0
        session = await manager.create()
        assert int((await status_of(manager, session))["ref"]) in waiting
        await manager.client.delete(f"/session/{session['session_id']}", headers=auth(session))
    finally:
        await manager.aclose()
    process.stop()
    assert processes_of(manager_id) == {}  # an orderly stop drains the pool


async def test_without_a_pool_a_restart_removes_what_an_earlier_pool_left(
    manager_process: ManagerProcessFactory, make_settings: SettingsFactory, manager_id: str
) -> None:
    quick = {"leader_ttl_s": 1, "reconcile_interval_s": 0.5, "orphan_grace_s": 0}
    process = manager_process(make_settings(warm_pool_size=2, **quick))
    manager = await process.start()
    await pool_full(manager, 2)
    await manager.aclose()
    process.kill()
    assert len(_members(manager_id)) == 2

    smaller = manager_process(make_settings(warm_pool_size=0, **quick))
    smaller.log_level = "INFO"
    manager = await smaller.start()
    try:
        deadline = time.monotonic() + _WAIT_S
        while _members(manager_id):  # the reconciler removes them as orphans
            assert time.monotonic() < deadline, smaller.log_path.read_text()[-3000:]
            await asyncio.sleep(0.1)
    finally:
        await manager.aclose()
        smaller.stop()
