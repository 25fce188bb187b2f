"""Private-network mode: the manager runs in its own container on a bridge network and
reaches processor containers by name; processors publish no port at all."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import docker
import httpx
import pytest

from session_manager.backends.base import MANAGER_LABEL, SESSION_LABEL
from tests.docker.conftest import PROCESSOR_IMAGE, SESSION_IMAGE

ADMIN_TOKEN = "private-network-admin-token-0123456789"


def docker_socket() -> str:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        pytest.skip("the manager container needs the engine's unix socket")
    return host.removeprefix("unix://")


@pytest.fixture(name="manager_container")
def fx_manager_container(docker_client: docker.DockerClient, manager_id: str) -> Iterator[str]:
    """The manager image on its own network; yields its 127.0.0.1 URL."""
    network = docker_client.networks.create(f"kato-test-{manager_id}", driver="bridge")
    container = None
    try:
        container = docker_client.containers.run(
            SESSION_IMAGE,
            detach=True,
            name=f"kato-manager-{manager_id}",
            user="0",  # the Docker socket is root's
            environment={
                "BACKEND": "docker",
                "DOCKER_NETWORK": network.name,
                "DOCKER_IMAGE": PROCESSOR_IMAGE,
                "ADMIN_TOKEN": ADMIN_TOKEN,
                "MANAGER_ID": manager_id,
            },
            volumes={docker_socket(): {"bind": "/var/run/docker.sock", "mode": "rw"}},
            network=network.name,
            ports={"8080/tcp": ("127.0.0.1", None)},
        )
        deadline = time.monotonic() + 60
        url = ""
        while time.monotonic() < deadline:
            container.reload()
            bindings = (container.attrs["NetworkSettings"]["Ports"] or {}).get("8080/tcp")
            if bindings:
                url = f"http://127.0.0.1:{bindings[0]['HostPort']}"
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
            if container.status == "exited":
                pytest.fail(f"manager container exited: {container.logs(tail=30).decode()}")
            time.sleep(0.2)
        else:
            pytest.fail(f"manager container not healthy: {container.logs(tail=30).decode()}")
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
        created = client.post("/session/create", json={"user_id": "alice"})
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
