"""A multi-node Docker Swarm on this machine (``scripts/swarm-nodes``) and a deployment on it.

For ``tests/cluster`` and ``bench/scale.py --backend swarm``:

* ``Cluster.up(name, images)``: ``NODES`` engines, each a node in its own network, mount, UTS
  and PID namespace with its own address on a private bridge, joined into one swarm (node 1
  the manager), ``images`` loaded on every node; ``kill(i)`` powers node *i* off; ``down()``
  removes everything and checks that nothing is left. The host's engine is never touched.
* ``deployment(cluster, manager_id, image, env)``: nodes labelled ``kato=processors`` and a
  ``zone`` each, an attachable overlay, the manager image in a container on node 1 with
  ``BACKEND=swarm``; yields its URL on node 1's address. Every service and container of
  ``manager_id`` is removed on the way out (checked on the nodes still up).
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker
from docker.errors import APIError, NotFound

from session_manager.backends.base import MANAGER_LABEL
from tests.docker.manager_container import run_manager_container

__all__ = ("NODES", "ROOT", "Cluster", "deployment")

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "swarm-nodes"
ROOT = Path("/var/lib/kato-swarm-nodes")
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

    @classmethod
    def up(cls, name: str, processor_image: str, manager_image: str) -> Cluster:
        """Bring the swarm up: ``processor_image`` on every node, ``manager_image`` on node 1."""
        done = subprocess.run(
            [str(SCRIPT), "up", name, str(NODES), processor_image],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"the swarm did not come up: {done.stderr[-3000:]}")
        cluster = cls(name)
        cluster._run("load", "1", manager_image)
        return cluster

    def down(self) -> None:
        """Every node killed, namespaces, bridge, firewall rule and files removed; checked."""
        self.close()
        self._run("down")
        assert not (ROOT / self.name).exists()
        netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert f"ksw{self.name}" not in netns, "a node's network namespace was left"


@contextlib.contextmanager
def deployment(
    cluster: Cluster, manager_id: str, image: str, env: dict[str, str], lost: int = 0
) -> Iterator[str]:
    """The manager in a container on node 1, on an attachable overlay; its URL on node 1's
    address. Every node is labelled ``kato=processors`` and its own ``zone``.

    ``lost``: a node powered off meanwhile (1-based; 0 none), not checked for leftovers.
    """
    swarm = cluster.manager
    for node in swarm.nodes.list():
        spec = node.attrs["Spec"]
        zone = cluster.hostnames.index(node.attrs["Description"]["Hostname"]) + 1
        spec["Labels"] = {"kato": "processors", "zone": f"z{zone}"}
        node.update(spec)
    network = swarm.networks.create(f"kato-{manager_id}", driver="overlay", attachable=True)
    container = None
    try:
        container, url = run_manager_container(
            swarm,
            image,
            name=f"kato-manager-{manager_id}",
            network=network.name,
            socket=cluster.sockets[0],
            publish_ip=cluster.ips[0],
            timeout_s=180,
            environment={"BACKEND": "swarm", "MANAGER_ID": manager_id, **env},
        )
        yield url
    finally:
        _remove_all(cluster, manager_id, lost)
        if container is not None:
            container.remove(force=True)
        for _ in range(100):  # the overlay goes once the service tasks are gone
            try:
                network.remove()
                break
            except APIError:
                time.sleep(0.2)


def _remove_all(cluster: Cluster, manager_id: str, lost: int) -> None:
    """Every service of this manager removed; then no processor container on a live node."""
    label = f"{MANAGER_LABEL}={manager_id}"
    for service in cluster.manager.services.list(filters={"label": label}):
        with contextlib.suppress(NotFound):
            service.remove()
    live = [c for i, c in enumerate(cluster.clients, start=1) if i != lost]
    deadline = time.monotonic() + 60
    left: list[str] = []
    while time.monotonic() < deadline:
        left = [
            c.name
            for client in live
            for c in client.containers.list(all=True, filters={"label": label})
        ]
        if not left:
            return
        time.sleep(0.5)
    raise AssertionError(f"processor containers left on the live nodes: {left}")
