"""Docker tests: a real engine, real images, and nothing left behind.

Skipped when no engine answers or the images are missing, unless ``REQUIRE_DOCKER=1`` (CI),
which turns either into a failure (``tests.support.docker_engine``, beside the image names).
Every test's containers carry its own manager id; an autouse check removes and reports
leftovers, and the session ends by checking that no container labelled ``io.kato.manager``
exists at all.
"""

from __future__ import annotations

import contextlib
import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from docker.errors import DockerException, ImageNotFound, NotFound

from session_manager.backends.base import MANAGER_LABEL

# Fixtures shared with the integration suite (a conftest only applies to its own directory).
from tests.integration.session_manager.conftest import (
    fx_make_settings,
    fx_manager,
    fx_manager_process,
    fx_no_leaked_processors,
    fx_redis_server,
    fx_redis_url,
    fx_start_manager,
)
from tests.support.docker_engine import FAILING_IMAGE, PROCESSOR_IMAGE, SESSION_IMAGE, unavailable

__all__ = (
    "fx_make_settings",
    "fx_manager",
    "fx_manager_process",
    "fx_no_leaked_processors",
    "fx_redis_server",
    "fx_redis_url",
    "fx_start_manager",
)

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/docker ``docker`` (``pytestmark`` in a conftest marks none)."""
    for item in items:
        if item.path.is_relative_to(_HERE):
            item.add_marker(pytest.mark.docker)


@pytest.fixture(name="docker_client", scope="session")
def fx_docker_client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env()
        client.ping()
    except DockerException as exc:
        unavailable(f"no Docker engine answers ({exc})")
    for image in (PROCESSOR_IMAGE, SESSION_IMAGE):
        try:
            client.images.get(image)
        except ImageNotFound:
            unavailable(f"image {image} is missing (run scripts/build-images)")
    yield client
    # CI owns the engine: nothing labelled may remain. Elsewhere other runs may share it, so
    # only containers of this run's manager ids are counted (and removed).
    rows = client.api.containers(all=True, filters={"label": MANAGER_LABEL})
    if os.environ.get("REQUIRE_DOCKER") != "1":
        rows = [
            row
            for row in rows
            if (row.get("Labels") or {}).get(MANAGER_LABEL, "").startswith(tuple(_MANAGER_IDS))
        ]
    for row in rows:
        with contextlib.suppress(NotFound):
            client.api.remove_container(row["Id"], force=True)
    client.close()
    assert not rows, f"containers left behind: {[row['Names'] for row in rows]}"


_MANAGER_IDS: set[str] = set()


@pytest.fixture(name="manager_id")
def fx_manager_id() -> str:
    """A manager id per test (labels its containers), remembered for the final check."""
    manager_id = f"test-{uuid.uuid4().hex[:12]}"
    _MANAGER_IDS.add(manager_id)
    return manager_id


@pytest.fixture(name="failing_image", scope="session")
def fx_failing_image(docker_client: docker.DockerClient) -> str:
    """The processor image with a command that fails at start, saying why on stderr."""
    dockerfile = (
        f"FROM {PROCESSOR_IMAGE}\n"
        'CMD ["/opt/kato/bin/python", "-c", '
        "\"import sys; print('processor exploded on purpose', file=sys.stderr); sys.exit(3)\"]\n"
    )
    docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=FAILING_IMAGE, rm=True)
    return FAILING_IMAGE


@pytest.fixture(name="no_leaked_containers", autouse=True)
def fx_no_leaked_containers(docker_client: docker.DockerClient, manager_id: str) -> Iterator[None]:
    yield
    leftovers = docker_client.containers.list(
        all=True, filters={"label": f"{MANAGER_LABEL}={manager_id}"}
    )
    for container in leftovers:
        container.remove(force=True)
    assert not leftovers, f"test left containers behind: {[c.name for c in leftovers]}"
