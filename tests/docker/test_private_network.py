"""Private-network mode: the manager runs in its own container on a bridge network and
reaches processor containers by name; processors publish no port at all."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import docker
import httpx
import pytest

from session_manager.backends.base import MANAGER_LABEL, SESSION_LABEL
from tests.docker.manager_container import run_manager_container
from tests.support.docker_engine import PROCESSOR_IMAGE, SESSION_IMAGE, docker_socket
from tests.support.manager import API_KEYS, CREATOR

ADMIN_TOKEN = "private-network-admin-token-0123456789"


@pytest.fixture(name="manager_container")
def fx_manager_container(docker_client: docker.DockerClient, manager_id: str) -> Iterator[str]:
    """The manager image on its own network; yields its 127.0.0.1 URL."""
    network = docker_client.networks.create(f"kato-test-{manager_id}", driver="bridge")
    container = None
    try:
        container, url = run_manager_container(
            docker_client,
            SESSION_IMAGE,
            name=f"kato-manager-{manager_id}",
            network=network.name,
            socket=docker_socket(),
            environment={
                "BACKEND": "docker",
                "DOCKER_IMAGE": PROCESSOR_IMAGE,
                "ADMIN_TOKEN": ADMIN_TOKEN,
                "API_KEYS": API_KEYS,
                "MANAGER_ID": manager_id,
            },
        )
        yield url
    finally:
        for leftover in docker_client.containers.list(
            all=True, filters={"label": f"{MANAGER_LABEL}={manager_id}"}
        ):
            leftover.remove(force=True)
        if container is not None:
            container.remove(force=True)
        network.remove()


def test_manager_in_a_container_drives_processors_on_the_private_network(
    manager_container: str, docker_client: docker.DockerClient, manager_id: str
) -> None:
    with httpx.Client(base_url=manager_container, timeout=60) as client:
        created = client.post("/session/create", json={"user_id": "alice"}, headers=CREATOR)
        assert created.status_code == 201, created.text
        session: dict[str, Any] = created.json()
        headers = {"Authorization": f"Bearer {session['token']}"}
        (processor,) = docker_client.containers.list(
            filters={"label": f"{SESSION_LABEL}={session['session_id']}"}
        )
        assert processor.labels[MANAGER_LABEL] == manager_id
        assert f"kato-test-{manager_id}" in processor.attrs["NetworkSettings"]["Networks"]
        assert not any(processor.attrs["NetworkSettings"]["Ports"].values()), (
            "no host port is published"
        )

        base = f"/session/{session['session_id']}"
        for word in ("over", "the", "network"):
            assert (
                client.post(
                    f"{base}/observe", json={"strings": [word]}, headers=headers
                ).status_code
                == 200
            )
        assert client.get(f"{base}/stm", headers=headers).json()["stm"] == [
            ["over"],
            ["the"],
            ["network"],
        ]

        assert client.delete(base, headers=headers).status_code in (200, 204)
        assert (
            docker_client.containers.list(
                all=True, filters={"label": f"{SESSION_LABEL}={session['session_id']}"}
            )
            == []
        )
