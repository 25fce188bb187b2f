"""A real multi-node swarm for the cluster tests: ``scripts/swarm-nodes`` on this machine.

* ``cluster`` (module): three Docker engines, each a node in its own network, mount, UTS and
  PID namespace with its own address on a private bridge, joined into one swarm (node 1 the
  manager), the processor image loaded on every node and the manager image on node 1. The
  host's engine is never touched. Torn down with nothing left (checked).

The pieces live in ``tests.support.swarm_cluster``. Needs root, ``ip``, ``nsenter``,
``unshare`` and ``dockerd``; without them (or the images) the tests are skipped, unless
``REQUIRE_DOCKER=1``, which makes that a failure.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator

import docker
import pytest
from docker.errors import DockerException, ImageNotFound

from tests.support.docker_engine import PROCESSOR_IMAGE, SESSION_IMAGE, unavailable
from tests.support.swarm_cluster import Cluster


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
    try:
        cluster = Cluster.up(uuid.uuid4().hex[:6], PROCESSOR_IMAGE, SESSION_IMAGE)
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        yield cluster
    finally:
        cluster.down()
