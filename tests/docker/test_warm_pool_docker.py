"""The warm pool on Docker (issue 15): sessions claim pre-started containers.

A container's labels cannot change once it runs, so a claimed container keeps its pool id as
its ``io.kato.session`` label and the binding to its session lives in Redis. These tests check
what depends on that: the reconciler (brisk, no orphan grace) keeps a claimed container as its
session's, a restarted manager adopts the unclaimed ones and keeps the claimed ones (also with
no pool configured any more), a burst larger than the pool degrades to cold starts, and an
orderly stop drains the pool. The autouse leak check of this package holds throughout.
"""

from __future__ import annotations

import asyncio
import time

import docker
import httpx

from session_manager.backends.base import MANAGER_LABEL, SESSION_LABEL, is_pool_id
from session_manager.processor_secrets import ProcessorSecrets
from tests.docker.test_docker_sessions import observe
from tests.support.docker_engine import RECONCILE_S, docker_settings
from tests.support.manager import (
    ADMIN,
    Manager,
    ManagerProcessFactory,
    SettingsFactory,
    StartManager,
    auth,
    pool_full,
    status_of,
)

_WAIT_S = 90
_QUICK = {"orphan_grace_s": 0}


def _containers(client: docker.DockerClient, manager_id: str) -> dict[str, str]:
    """Container id -> ``io.kato.session`` label of this manager's running containers."""
    rows = client.api.containers(filters={"label": f"{MANAGER_LABEL}={manager_id}"})
    return {row["Id"]: (row.get("Labels") or {}).get(SESSION_LABEL, "") for row in rows}


def _pool_members(client: docker.DockerClient, manager_id: str) -> set[str]:
    """Ids of the containers started for the pool (claimed ones too: labels do not change)."""
    return {cid for cid, label in _containers(client, manager_id).items() if is_pool_id(label)}


async def _reconciled(manager: Manager, passes: int = 3) -> None:
    """Let the brisk reconciler run a few passes (each would remove a claimed orphan)."""
    await asyncio.sleep(passes * RECONCILE_S + 0.5)


async def test_a_create_claims_a_pooled_container_which_stays_its_sessions(
    start_manager: StartManager,
    make_settings: SettingsFactory,
    docker_client: docker.DockerClient,
    manager_id: str,
) -> None:
    manager = await start_manager(docker_settings(make_settings, warm_pool_size=2, **_QUICK))
    await pool_full(manager, 2)
    waiting = _pool_members(docker_client, manager_id)
    assert len(waiting) == 2

    session = await manager.create(genes={"recall_threshold": 0.3})
    sid = session["session_id"]
    record = await status_of(manager, session)
    assert record["ref"] in waiting  # a pooled container, not a new one
    await observe(manager, session, "hello")
    gene = await manager.client.get(f"/session/{sid}/gene/recall_threshold", headers=auth(session))
    assert gene.json()["gene_value"] == 0.3

    # The backend lists it as the session's (the binding in Redis), so the reconciler, with no
    # orphan grace, leaves it alone while the pool refills.
    listed = {h.ref: h.session_id for h in await manager.app.state.backend.inner.list_owned()}
    assert listed[record["ref"]] == sid
    pool_id = _containers(docker_client, manager_id)[record["ref"]]
    bindings = manager.app.state.store.pool_bindings
    assert await bindings.sessions_of([pool_id]) == {pool_id: sid}
    pool = await pool_full(manager, 2)
    await _reconciled(manager)
    assert record["ref"] in _containers(docker_client, manager_id)
    stm = await manager.client.get(f"/session/{sid}/stm", headers=auth(session))
    assert stm.json()["stm"] == [["hello"]]
    assert (pool["hits"], pool["misses"]) == (1, 0)

    # Ended, it is removed (never handed out again) and its binding is dropped.
    deleted = await manager.client.delete(f"/session/{sid}", headers=auth(session))
    assert deleted.status_code == 204
    assert record["ref"] not in _containers(docker_client, manager_id)
    assert await bindings.sessions_of([pool_id]) == {}


async def test_pooled_containers_are_unreachable_before_their_claim(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    manager = await start_manager(docker_settings(make_settings, warm_pool_size=1))
    await pool_full(manager, 1)
    session = await manager.create()
    await pool_full(manager, 1)
    key = manager.app.state.settings.processor_secret_key
    (member,) = manager.app.state.pool.waiting()
    listing = (await manager.client.get("/admin/sessions", headers=ADMIN)).json()["sessions"]
    assert [s["session_id"] for s in listing] == [session["session_id"]]
    async with httpx.AsyncClient(trust_env=False) as client:
        url = f"{member.endpoint}/stm"
        assert (await client.get(url)).status_code == 401
        other = ProcessorSecrets(key).headers(session["session_id"])
        assert (await client.get(url, headers=other)).status_code == 401
        mine = ProcessorSecrets(key).headers(str(member.session_id))
        refused = await client.get(url, headers=mine)
        assert refused.status_code == 409
        assert refused.json()["error"]["code"] == "NOT_CLAIMED"


async def test_a_burst_larger_than_the_pool_degrades_to_cold_starts(
    start_manager: StartManager,
    make_settings: SettingsFactory,
    docker_client: docker.DockerClient,
    manager_id: str,
) -> None:
    manager = await start_manager(
        docker_settings(make_settings, warm_pool_size=2, max_concurrent_starts=8)
    )
    await pool_full(manager, 2)
    sessions = await asyncio.gather(*(manager.create(user_id=f"u{i}") for i in range(5)))
    for session in sessions:
        await observe(manager, session, "x")
    pool = await pool_full(manager, 2)  # and it refills
    assert pool["hits"] + pool["misses"] == 5
    assert pool["hits"] >= 2
    assert pool["misses"] >= 1
    refs = {(await status_of(manager, s))["ref"] for s in sessions}
    assert len(refs) == 5  # five containers, none handed out twice
    assert len(_containers(docker_client, manager_id)) == 5 + 2


async def test_a_restarted_manager_adopts_the_pool_keeps_claimed_containers_and_drains(
    manager_process: ManagerProcessFactory,
    make_settings: SettingsFactory,
    docker_client: docker.DockerClient,
    manager_id: str,
) -> None:
    settings = docker_settings(make_settings, warm_pool_size=2, **_QUICK)
    process = manager_process(settings)
    manager = await process.start()
    await pool_full(manager, 2)
    session = await manager.create()
    claimed = (await status_of(manager, session))["ref"]
    await observe(manager, session, "before-the-crash")
    await pool_full(manager, 2)
    waiting = _pool_members(docker_client, manager_id) - {claimed}
    await manager.aclose()
    process.kill()

    manager = await process.start()
    try:
        pool = await pool_full(manager, 2)
        await _reconciled(manager)
        # The same two waiting containers, adopted; the claimed one still serves its session.
        assert _pool_members(docker_client, manager_id) == waiting | {claimed}
        assert pool["refilling"] == 0
        stm = await manager.client.get(
            f"/session/{session['session_id']}/stm", headers=auth(session)
        )
        assert stm.json()["stm"] == [["before-the-crash"]]
        other = await manager.create(user_id="bob")
        assert (await status_of(manager, other))["ref"] in waiting
    finally:
        await manager.end_all()
        await manager.aclose()
    process.stop()
    assert _containers(docker_client, manager_id) == {}  # an orderly stop drains the pool


async def test_without_a_pool_a_restart_keeps_claimed_containers_and_removes_the_rest(
    manager_process: ManagerProcessFactory,
    make_settings: SettingsFactory,
    docker_client: docker.DockerClient,
    manager_id: str,
) -> None:
    process = manager_process(docker_settings(make_settings, warm_pool_size=1, **_QUICK))
    manager = await process.start()
    await pool_full(manager, 1)
    session = await manager.create()
    claimed = (await status_of(manager, session))["ref"]
    await pool_full(manager, 1)
    await manager.aclose()
    process.kill()
    assert len(_pool_members(docker_client, manager_id)) == 2

    smaller = manager_process(docker_settings(make_settings, warm_pool_size=0, **_QUICK))
    async with smaller.running() as manager:
        deadline = time.monotonic() + _WAIT_S
        while set(_containers(docker_client, manager_id)) != {claimed}:  # orphans go
            assert time.monotonic() < deadline, _containers(docker_client, manager_id)
            await asyncio.sleep(0.2)
        await _reconciled(manager)
        assert set(_containers(docker_client, manager_id)) == {claimed}
        stm = await manager.client.get(
            f"/session/{session['session_id']}/stm", headers=auth(session)
        )
        assert stm.status_code == 200
