"""A real multi-node swarm for the cluster tests: ``scripts/swarm-nodes`` on this machine.

* ``cluster`` (module): three Docker engines, each a node in its own network, mount, UTS and
  PID namespace with its own address on a private bridge, joined into one swarm (node 1 the
  manager), the processor image loaded on every node and the manager image on node 1. The
  host's engine is never touched. Torn down with nothing left (checked).

Needs root, ``ip``, ``nsenter``/``unshare`` and ``dockerd``; without them (or the images) the
tests are skipped, unless ``REQUIRE_DOCKER=1``, which makes that a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from docker.errors import DockerException, ImageNotFound

from tests.support.docker_engine import PROCESSOR_IMAGE, SESSION_IMAGE, unavailable

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "swarm-nodes"
NODES = 3


class Cluster:
    """A running swarm of ``NODES`` engines: their clients, addresses and hostnames."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sockets: list[str] = []
        self.ips: list[str] = []
        for i in range(1, NODES + 1):
            env = dict(item.split("=", 1) for item in self._run("env", str(i)).split())
            self.sockets.append(env["DOCKER_HOST"].removeprefix("unix://"))
            self.ips.append(env["NODE_IP"])
        self.clients = [docker.DockerClient(base_url=f"unix://{s}") for s in self.sockets]
        self.hostnames = [c.info()["Name"] for c in self.clients]

    @property
    def manager(self) -> docker.DockerClient:
        """Node 1's engine: the swarm manager."""
        return self.clients[0]

    def _run(self, *args: str) -> str:
        done = subprocess.run(
            [str(SCRIPT), args[0], self.name, *args[1:]],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"swarm-nodes {' '.join(args)}: {done.stderr[-2000:]}")
        return done.stdout

    def kill(self, node: int) -> None:
        """Power node ``node`` (1-based) off: every process of it SIGKILLed at once."""
        self.clients[node - 1].close()
        self._run("kill", str(node))

    def close(self) -> None:
        for client in self.clients:
            client.close()


def _preconditions() -> None:
    if os.geteuid() != 0:
        unavailable("the cluster tests need root (network namespaces, dockerd)")
    for tool in ("ip", "nsenter", "unshare", "dockerd", "iptables"):
        if shutil.which(tool) is None:
            unavailable(f"the cluster tests need {tool}")
    try:
        host = docker.from_env()
        for image in (PROCESSOR_IMAGE, SESSION_IMAGE):
            host.images.get(image)
    except ImageNotFound as exc:
        unavailable(f"image missing (run scripts/build-images): {exc}")
    except DockerException as exc:
        unavailable(f"no Docker engine answers ({exc})")


@pytest.fixture(name="cluster", scope="module")
def fx_cluster() -> Iterator[Cluster]:
    _preconditions()
    name = uuid.uuid4().hex[:6]
    up = subprocess.run(
        [str(SCRIPT), "up", name, str(NODES), PROCESSOR_IMAGE],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    cluster: Cluster | None = None
    try:
        if up.returncode != 0:
            pytest.fail(f"the swarm did not come up: {up.stderr[-3000:]}")
        cluster = Cluster(name)
        cluster._run("load", "1", SESSION_IMAGE)
        yield cluster
    finally:
        if cluster is not None:
            cluster.close()
        down = subprocess.run(
            [str(SCRIPT), "down", name], capture_output=True, text=True, timeout=300, check=False
        )
        assert down.returncode == 0, down.stderr
        assert not Path(f"/var/lib/kato-swarm-nodes/{name}").exists()
        netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert f"ksw{name}" not in netns, "a node's network namespace was left"
