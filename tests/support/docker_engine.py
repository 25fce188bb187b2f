"""The Docker suite's images and its rule for a missing engine or image.

Without an engine or an image the Docker tests are skipped, unless ``REQUIRE_DOCKER=1`` (CI),
which turns either into a failure.
"""

from __future__ import annotations

import os
from typing import Any, NoReturn

import pytest

from tests.docker.manager_container import engine_socket
from tests.support.manager import SettingsFactory

__all__ = (
    "FAILING_IMAGE",
    "LEASE_S",
    "PROCESSOR_IMAGE",
    "RECONCILE_S",
    "SESSION_IMAGE",
    "docker_settings",
    "docker_socket",
    "unavailable",
)

PROCESSOR_IMAGE = os.environ.get("DOCKER_IMAGE", "kato-processor:latest")
SESSION_IMAGE = os.environ.get("SESSION_IMAGE", "kato-session:latest")
FAILING_IMAGE = "kato-processor-failing:test"

RECONCILE_S = 0.5
LEASE_S = 2


def docker_settings(make_settings: SettingsFactory, **fields: Any) -> Any:
    """Docker-backend settings: loopback ports, the processor image, a brisk reconciler."""
    return make_settings(
        backend="docker",
        docker_publish="loopback",
        docker_image=PROCESSOR_IMAGE,
        reconcile_interval_s=RECONCILE_S,
        leader_ttl_s=LEASE_S,
        **fields,
    )


def unavailable(reason: str) -> NoReturn:
    """Skip the test for ``reason``, or fail it when ``REQUIRE_DOCKER=1``."""
    if os.environ.get("REQUIRE_DOCKER") == "1":
        pytest.fail(f"REQUIRE_DOCKER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def docker_socket() -> str:
    """The engine's socket, to mount into a manager container; skips for a TCP engine."""
    socket = engine_socket()
    if socket is None:
        pytest.skip("the manager container needs the engine's unix socket")
    return socket
