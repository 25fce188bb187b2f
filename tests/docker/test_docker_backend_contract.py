"""The Backend contract on the ``docker`` backend, plus what only containers can get wrong.

The portable contract tests are imported from the integration suite and run here against a
``DockerBackend`` (the ``backend`` fixture below); the autouse leak check in this package's
conftest fails any test that leaves a container behind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import docker
import pytest

from session_manager.backends.base import MANAGER_LABEL
from session_manager.backends.docker import DockerBackend
from session_manager.errors import StartFailed
from session_manager.settings import Settings
from tests.integration.session_manager.test_backend_contract import (
    test_a_start_that_fails_raises_start_failed_and_leaves_nothing,
    test_list_owned_finds_running_processors_with_their_sessions,
    test_start_returns_a_healthy_processor_with_the_requested_env,
    test_stop_removes_the_processor_and_is_idempotent,
)
from tests.processes import processor_spec
from tests.support.docker_engine import PROCESSOR_IMAGE

__all__ = (
    "test_a_start_that_fails_raises_start_failed_and_leaves_nothing",
    "test_list_owned_finds_running_processors_with_their_sessions",
    "test_start_returns_a_healthy_processor_with_the_requested_env",
    "test_stop_removes_the_processor_and_is_idempotent",
)


def docker_backend(manager_id: str, image: str = PROCESSOR_IMAGE) -> DockerBackend:
    """Loopback publishing and the default limits, as a manager on the host would have."""
    return DockerBackend.from_settings(
        Settings(backend="docker", docker_image=image, manager_id=manager_id, stop_timeout_s=5)
    )


@pytest.fixture(name="backend")
async def fx_backend(manager_id: str) -> AsyncIterator[DockerBackend]:
    backend = docker_backend(manager_id)
    yield backend
    for handle in await backend.list_owned():
        await backend.stop(handle)
    await backend.close()


def owned(client: docker.DockerClient, manager_id: str) -> list[dict[str, Any]]:
    """One list call (no per-container inspect that a concurrent removal could fail)."""
    rows: list[dict[str, Any]] = client.api.containers(
        all=True, filters={"label": f"{MANAGER_LABEL}={manager_id}"}
    )
    return rows


async def test_a_start_cancelled_while_the_engine_creates_leaves_no_container(
    backend: DockerBackend, docker_client: docker.DockerClient, manager_id: str
) -> None:
    task = asyncio.create_task(backend.start(processor_spec()))
    while not owned(docker_client, manager_id):  # the engine has created it, start() runs on
        await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert owned(docker_client, manager_id) == []


async def test_a_container_that_exited_is_not_listed_and_is_cleared_away(
    backend: DockerBackend,
    docker_client: docker.DockerClient,
    manager_id: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wanted = processor_spec()
    handle = await backend.start(wanted)
    docker_client.containers.get(handle.ref).kill()
    assert not await backend.is_alive(handle)
    with caplog.at_level(logging.WARNING, logger="session_manager.backends.docker"):
        assert await backend.list_owned() == []
    assert owned(docker_client, manager_id) == []
    (record,) = [
        r for r in caplog.records if r.getMessage() == "exited processor container removed"
    ]
    assert record.__dict__["session_id"] == wanted.session_id
    assert record.__dict__["log_tail"], "the dead processor's last lines are logged"
    await backend.stop(handle)  # what the lifecycle then does: already gone is fine


async def test_a_container_of_another_manager_is_neither_listed_nor_stopped(
    backend: DockerBackend, docker_client: docker.DockerClient, manager_id: str
) -> None:
    other = docker_backend(f"{manager_id}-other")
    foreign = await other.start(processor_spec())
    try:
        assert await backend.list_owned() == []
        assert not await backend.is_alive(foreign)
        await backend.stop(foreign)
        assert docker_client.containers.get(foreign.ref).status == "running"
    finally:
        await other.stop(foreign)
        await other.close()


async def test_a_missing_image_is_a_start_failure_naming_the_image(manager_id: str) -> None:
    backend = docker_backend(manager_id, image="kato-processor-does-not-exist:never")
    try:
        with pytest.raises(StartFailed) as caught:
            await backend.start(processor_spec())
    finally:
        await backend.close()
    assert "kato-processor-does-not-exist:never" in caught.value.message
