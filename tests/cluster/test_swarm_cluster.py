"""``BACKEND=swarm`` on a real three-node swarm: sessions spread over every node (placement by
labels), visible per node; then one node is powered off under a mixed workload, and every
session that ran there answers again, recovered on the others from checkpoint and journal, with
the state of a control processor fed exactly its acknowledged requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.chaos import Worker, control_state, final_state
from tests.support.docker_engine import PROCESSOR_IMAGE, SESSION_IMAGE
from tests.support.manager import ADMIN, API_KEYS, Manager, auth
from tests.support.swarm_cluster import NODES, Cluster, deployment

ADMIN_TOKEN = ADMIN["Authorization"].removeprefix("Bearer ")
SESSIONS = int(os.environ.get("CLUSTER_SESSIONS", "30"))
SEED = int(os.environ.get("CHAOS_SEED", "1818"))
LOAD_BEFORE_S = 8.0
LOAD_AFTER_S = 20.0
RECOVERY_BOUND_S = 90.0
"""Every session of the lost node answers again within this long after the power-off."""
LOST = NODES  # the node powered off: a worker (node 1 is the swarm manager, and runs ours)


@pytest.fixture(name="manager_id")
def fx_manager_id() -> str:
    return f"test-{os.urandom(6).hex()}"


@pytest.fixture(name="deployment")
def fx_deployment(cluster: Cluster, manager_id: str) -> Iterator[str]:
    """The manager on node 1 (``tests.support.swarm_cluster.deployment``), placing by labels."""
    env = {
        "DOCKER_IMAGE": PROCESSOR_IMAGE,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "API_KEYS": API_KEYS,
        "MAX_SESSIONS_PER_USER": "100",
        "START_TIMEOUT_S": "120",
        "RECONCILE_INTERVAL_S": "1",
        "LEADER_TTL_S": "3",
        "CHECKPOINT_INTERVAL_S": "2",
        "CHECKPOINT_MAX_ENTRIES": "40",
        "PROXY_CONNECT_TIMEOUT_S": "1",
        "PROCESSOR_MEMORY_LIMIT": "512m",
        "PROCESSOR_PIDS_LIMIT": "96",
        "SWARM_CONSTRAINTS": "node.labels.kato==processors",
        "SWARM_SPREAD": "node.labels.zone",
        "SWARM_MEMORY_RESERVATION": "32m",
        "LOG_LEVEL": "INFO",
    }
    with deployment(cluster, manager_id, SESSION_IMAGE, env, lost=LOST) as url:
        yield url


async def _create_all(manager: Manager) -> list[dict[str, Any]]:
    gate = asyncio.Semaphore(8)

    async def one(i: int) -> dict[str, Any]:
        async with gate:
            reply = await manager.client.post(
                "/session/create",
                json={"user_id": f"user{i % 5}"},
                headers={**manager.creator, "Idempotency-Key": f"cluster-{i}"},
            )
            assert reply.status_code == 201, reply.text
            body: dict[str, Any] = reply.json()
            return body

    return list(await asyncio.gather(*(one(i) for i in range(SESSIONS))))


async def _nodes_of(manager: Manager) -> dict[str, str]:
    page = await manager.client.get("/admin/sessions", params={"limit": 500}, headers=ADMIN)
    assert page.status_code == 200, page.text
    return {s["session_id"]: s["node"] for s in page.json()["sessions"]}


async def _answers_again(manager: Manager, session: dict[str, Any], since: float) -> float:
    """Seconds from ``since`` until the session answers a read (bounded)."""
    path = f"/session/{session['session_id']}/stm"
    while time.monotonic() - since < RECOVERY_BOUND_S:
        with contextlib.suppress(Exception):
            reply = await manager.client.get(path, headers=auth(session), timeout=10)
            if reply.status_code == 200:
                return time.monotonic() - since
        await asyncio.sleep(0.5)
    raise AssertionError(f"session {session['session_id']} did not answer again in time")


@pytest.mark.timeout(1800)  # three engines, 30 containers and a node loss on two cores
async def test_sessions_spread_over_the_nodes_and_survive_losing_one(
    cluster: Cluster, deployment: str
) -> None:
    manager = Manager(deployment)
    manager.client.timeout = httpx.Timeout(240)  # creates wait for their processor's start
    try:
        began = time.monotonic()
        sessions = await _create_all(manager)
        create_s = time.monotonic() - began
        # Spread: every node runs some, as the admin listing, /admin/stats and /metrics say.
        nodes = await _nodes_of(manager)
        per_node = {h: list(nodes.values()).count(h) for h in cluster.hostnames}
        assert all(count >= SESSIONS // NODES - 1 for count in per_node.values()), per_node
        stats = (await manager.client.get("/admin/stats", headers=ADMIN)).json()
        assert stats["processors_by_node"] == per_node
        metrics = (await manager.client.get("/metrics")).text
        for host, count in per_node.items():
            assert f'kato_processors{{node="{host}"}} {float(count)}' in metrics

        # A mixed workload on every session; one node powered off in the middle of it.
        lost_host = cluster.hostnames[LOST - 1]
        on_lost = [s for s in sessions if nodes[s["session_id"]] == lost_host]
        rng = random.Random(SEED)
        workers = [Worker(manager, s, random.Random(rng.random())) for s in sessions]
        until = time.monotonic() + LOAD_BEFORE_S + LOAD_AFTER_S

        async def power_off() -> list[float]:
            """Node ``LOST`` off mid-load; then how long each of its sessions took to answer."""
            await asyncio.sleep(LOAD_BEFORE_S)
            await asyncio.to_thread(cluster.kill, LOST)
            killed_at = time.monotonic()
            return list(
                await asyncio.gather(*(_answers_again(manager, s, killed_at) for s in on_lost))
            )

        answered, _ = await asyncio.gather(
            power_off(), asyncio.gather(*(w.run(until) for w in workers))
        )
        for worker in workers:
            await worker.drop_socket()

        # Recovered on the others; every session's state is its control's: nothing
        # acknowledged lost, nothing applied twice.
        nodes = await _nodes_of(manager)
        assert lost_host not in nodes.values()
        assert len(nodes) == SESSIONS
        gate = asyncio.Semaphore(3)

        async def check(worker: Worker) -> None:
            final = await final_state(manager, worker)
            async with gate:
                expected = await asyncio.to_thread(
                    control_state, worker.session["session_id"], worker.acked
                )
            assert final == expected, f"session {worker.session['session_id']}"

        await asyncio.gather(*(check(w) for w in workers))
        acked = sum(len(w.acked) for w in workers)
        assert acked > SESSIONS * 5
        print(
            f"cluster: {SESSIONS} sessions created in {create_s:.1f} s over {per_node}; "
            f"node {lost_host} lost with {len(on_lost)}: all answered again within "
            f"{max(answered):.1f} s (median {sorted(answered)[len(answered) // 2]:.1f} s); "
            f"{acked} writes acknowledged, {sum(w.failed for w in workers)} refused"
        )
    finally:
        await manager.end_all()
        await manager.aclose()
