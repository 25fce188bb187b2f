"""``BACKEND=swarm`` on a single-node swarm: one service per session, reached over an overlay
network by a manager that runs in its own container on it; nothing left behind."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import docker
import httpx
import pytest
import redis.asyncio as aioredis
from docker.errors import APIError

from session_manager.backends.base import MANAGER_LABEL, SESSION_LABEL
from session_manager.backends.swarm import SwarmBackend
from session_manager.settings import Settings
from session_manager.store.bindings import PoolBindings
from tests.docker.manager_container import run_manager_container
from tests.support.docker_engine import PROCESSOR_IMAGE, SESSION_IMAGE, docker_socket
from tests.support.manager import API_KEYS, CREATOR

ADMIN_TOKEN = "swarm-admin-token-0123456789abcdef"


@pytest.fixture(name="swarm", scope="module")
def fx_swarm(docker_client: docker.DockerClient) -> Iterator[docker.DockerClient]:
    """A single-node swarm on loopback; left again if this fixture made it."""
    created = False
    if docker_client.info().get("Swarm", {}).get("LocalNodeState") != "active":
        try:
            docker_client.swarm.init(advertise_addr="127.0.0.1", listen_addr="127.0.0.1:2377")
        except APIError as exc:
            pytest.fail(f"cannot start a single-node swarm: {exc}")
        created = True
    yield docker_client
    if created:
        docker_client.swarm.leave(force=True)


def services_of(client: docker.DockerClient, label: str) -> list[Any]:
    return client.services.list(filters={"label": label})


@pytest.fixture(name="swarm_manager")
def fx_swarm_manager(swarm: docker.DockerClient, manager_id: str) -> Iterator[str]:
    network = swarm.networks.create(f"kato-swarm-{manager_id}", driver="overlay", attachable=True)
    container = None
    try:
        container, url = run_manager_container(
            swarm,
            SESSION_IMAGE,
            name=f"kato-swarm-manager-{manager_id}",
            network=network.name,
            socket=docker_socket(),
            environment={
                "BACKEND": "swarm",
                "DOCKER_IMAGE": PROCESSOR_IMAGE,
                "ADMIN_TOKEN": ADMIN_TOKEN,
                "API_KEYS": API_KEYS,
                "MANAGER_ID": manager_id,
                "START_TIMEOUT_S": "60",
                "PROCESSOR_PIDS_LIMIT": "96",
            },
        )
        yield url
    finally:
        for service in services_of(swarm, f"{MANAGER_LABEL}={manager_id}"):
            service.remove()
        if container is not None:
            container.remove(force=True)
        for _ in range(50):  # the overlay can be removed once the service tasks are gone
            try:
                network.remove()
                break
            except APIError:
                time.sleep(0.2)


def test_sessions_run_as_swarm_services(
    swarm_manager: str, swarm: docker.DockerClient, manager_id: str
) -> None:
    with httpx.Client(base_url=swarm_manager, timeout=120) as client:
        created = client.post("/session/create", json={"user_id": "alice"}, headers=CREATOR)
        assert created.status_code == 201, created.text
        session = created.json()
        headers = {"Authorization": f"Bearer {session['token']}"}
        (service,) = services_of(swarm, f"{SESSION_LABEL}={session['session_id']}")
        spec = service.attrs["Spec"]
        assert spec["Labels"][MANAGER_LABEL] == manager_id
        assert spec["Mode"] == {"Replicated": {"Replicas": 1}}
        container_spec = spec["TaskTemplate"]["ContainerSpec"]
        assert container_spec["ReadOnly"] is True
        assert container_spec["CapabilityDrop"] == ["ALL"]
        limits = spec["TaskTemplate"]["Resources"]["Limits"]
        assert limits["MemoryBytes"] == 1024 * 1024 * 1024
        assert limits["Pids"] == 96
        (task_container,) = swarm.containers.list(
            filters={"label": f"com.docker.swarm.service.id={service.id}"}
        )
        assert task_container.attrs["HostConfig"]["PidsLimit"] == 96
        assert not service.attrs.get("Endpoint", {}).get("Ports"), "nothing is published"

        base = f"/session/{session['session_id']}"
        for word in ("in", "a", "swarm"):
            assert (
                client.post(
                    f"{base}/observe", json={"strings": [word]}, headers=headers
                ).status_code
                == 200
            )
        assert client.get(f"{base}/stm", headers=headers).json()["stm"] == [
            ["in"],
            ["a"],
            ["swarm"],
        ]
        other = client.post("/session/create", json={"user_id": "bob"}, headers=CREATOR).json()
        other_stm = client.get(
            f"/session/{other['session_id']}/stm",
            headers={"Authorization": f"Bearer {other['token']}"},
        )
        assert other_stm.json()["stm"] == []

        for s in (session, other):
            reply = client.delete(
                f"/session/{s['session_id']}", headers={"Authorization": f"Bearer {s['token']}"}
            )
            assert reply.status_code in (200, 204)
        assert services_of(swarm, f"{MANAGER_LABEL}={manager_id}") == []


async def test_a_claimed_pool_service_is_listed_as_its_sessions_and_unbound_when_removed(
    swarm: docker.DockerClient, manager_id: str, redis_url: str
) -> None:
    """A service's labels are fixed too: the swarm backend reads a pool member's session from
    the Redis bindings (the manager runs its warm pool through ``bind``, as with docker)."""
    client = aioredis.Redis.from_url(redis_url)
    bindings = PoolBindings(client, "t:pool-bindings")
    backend = SwarmBackend.from_settings(
        Settings(backend="swarm", docker_network=f"kato-swarm-{manager_id}", manager_id=manager_id)
    )
    backend.keep_bindings(bindings)
    pool_id = f"pool-{uuid.uuid4().hex}"
    service = swarm.services.create(
        PROCESSOR_IMAGE,
        name=f"kato-{pool_id}",
        env=[f"PROCESSOR_ID={pool_id}", "AWAIT_CLAIM=1"],
        labels={SESSION_LABEL: pool_id, MANAGER_LABEL: manager_id},
    )
    try:
        # Listed once its task runs (a service whose task is not live counts as lost).
        deadline = time.monotonic() + 60
        while not (owned := await backend.list_owned()):
            assert time.monotonic() < deadline, "the pool service's task never ran"
            await asyncio.sleep(0.2)
        (listed,) = owned
        assert (listed.ref, listed.session_id) == (service.id, pool_id)  # unassigned
        session_id = uuid.uuid4().hex
        bound = await backend.bind(listed, session_id)
        assert bound.session_id == session_id
        assert [(h.ref, h.session_id) for h in await backend.list_owned()] == [
            (service.id, session_id)
        ]
        await backend.stop(bound)
        assert services_of(swarm, f"{MANAGER_LABEL}={manager_id}") == []
        assert await bindings.sessions_of([pool_id]) == {}
    finally:
        for leftover in services_of(swarm, f"{MANAGER_LABEL}={manager_id}"):
            leftover.remove()
        await backend.close()
        await client.aclose()
