"""The manager image run as a container on the processors' network, as compose runs it.

Shared by the private-network and swarm tests and by ``bench/scale.py --network private``.
"""

from __future__ import annotations

import os
import time

import docker
import httpx
from docker.models.containers import Container

__all__ = ("engine_socket", "run_manager_container")


def engine_socket() -> str | None:
    """The engine's unix socket path (to mount into the manager), or None for a TCP engine."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    return host.removeprefix("unix://") if host.startswith("unix://") else None


def run_manager_container(
    client: docker.DockerClient,
    image: str,
    *,
    name: str,
    network: str,
    socket: str,
    environment: dict[str, str],
    timeout_s: float = 60,
    publish_ip: str = "127.0.0.1",
) -> tuple[Container, str]:
    """Start the manager on ``network`` with the engine socket and its port on ``publish_ip``
    (127.0.0.1: the engine's host only; a swarm node's address for the cluster tests).

    Its ``DOCKER_NETWORK`` is ``network``, where it starts the processors beside itself.

    Returns the container and its URL once ``/health`` answers. A manager that exits or stays
    unhealthy is removed and raises ``RuntimeError`` with its last log lines.
    """
    container = client.containers.run(
        image,
        detach=True,
        name=name,
        user="0",  # the Docker socket is root's
        environment={"DOCKER_NETWORK": network, **environment},
        volumes={socket: {"bind": "/var/run/docker.sock", "mode": "rw"}},
        network=network,
        ports={"8080/tcp": (publish_ip, None)},
    )
    deadline = time.monotonic() + timeout_s
    problem = f"not healthy within {timeout_s:g} s"
    while time.monotonic() < deadline:
        container.reload()
        bindings = (container.attrs["NetworkSettings"]["Ports"] or {}).get("8080/tcp")
        if bindings:
            url = f"http://{publish_ip}:{bindings[0]['HostPort']}"
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    return container, url
            except httpx.HTTPError:
                pass
        if container.status == "exited":
            problem = "exited"
            break
        time.sleep(0.2)
    logs = container.logs(tail=30).decode("utf-8", "replace")
    container.remove(force=True)
    raise RuntimeError(f"manager container {problem}: {logs}")
