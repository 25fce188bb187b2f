"""Processor containers on the engine: run options, endpoints, log tails and removal.

Shared by the docker and swarm backends. Every blocking SDK call goes through ``docker_call``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import docker
from docker.errors import APIError, DockerException, NotFound
from docker.models.containers import Container

from session_manager.backends.base import MANAGER_LABEL, SESSION_LABEL, ProcessorSpec
from session_manager.errors import BackendUnavailable

__all__ = (
    "PROCESSOR_PORT",
    "ContainerLimits",
    "docker_call",
    "endpoint_of",
    "listed_endpoint",
    "log_tail",
    "remove_container",
    "remove_dead",
    "run_options",
)

log = logging.getLogger(__name__)

T = TypeVar("T")

PROCESSOR_PORT = 8000

_ENGINE_THREADS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="docker-sdk")
"""Threads of their own for SDK calls. On asyncio's default pool (6 threads on 2 cores), calls
stuck on an unreachable node held every thread, and the name lookups of the proxy and Redis,
which use that pool too, waited behind them: a node loss stalled traffic to healthy nodes."""


async def docker_call(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking SDK call off the event loop; a dead engine is ``BackendUnavailable``."""
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(_ENGINE_THREADS, functools.partial(call, *args, **kwargs))
    except (NotFound, APIError):
        raise
    except DockerException as exc:
        raise BackendUnavailable(f"Docker engine not reachable: {exc}") from exc


class ContainerLimits:
    """Resource limits every processor container gets."""

    __slots__ = ("cpus", "memory", "pids")

    def __init__(self, *, memory: str, cpus: float, pids: int) -> None:
        self.memory = memory
        self.cpus = cpus
        self.pids = pids


def run_options(
    spec: ProcessorSpec,
    *,
    image: str,
    manager_id: str,
    network: str | None,
    limits: ContainerLimits,
) -> dict[str, Any]:
    """``containers.run`` keyword arguments: labelled, limited and hardened."""
    # A suffix, so that a restored session never collides with its old container.
    name = f"kato-{spec.processor_id[:40]}-{secrets.token_hex(3)}"
    options: dict[str, Any] = {
        "image": image,
        "name": name,
        "detach": True,
        # ALLOWED_HOSTS: on a private network the manager reaches it by its name (Host check).
        "environment": {
            **spec.env,
            "HOST": "0.0.0.0",
            "PORT": str(PROCESSOR_PORT),
            "ALLOWED_HOSTS": name,
        },
        "labels": {SESSION_LABEL: spec.session_id, MANAGER_LABEL: manager_id},
        "mem_limit": limits.memory,
        "nano_cpus": int(limits.cpus * 1_000_000_000),
        "pids_limit": limits.pids,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "read_only": True,
        "tmpfs": {"/tmp": "rw,noexec,nosuid,size=16m"},  # noqa: S108
        "user": "10001",
        # The manager checks readiness and liveness itself; the image's HEALTHCHECK (for
        # standalone use) would start a Python process in every container every 10 s.
        "healthcheck": {"test": ["NONE"]},
    }
    if network is not None:
        options["network"] = network
    else:
        options["ports"] = {f"{PROCESSOR_PORT}/tcp": ("127.0.0.1", None)}
    return options


def endpoint_of(container: Container, network: str | None) -> str:
    """The URL of an inspected container; raises ``KeyError`` until its port is published."""
    if network is not None:
        return f"http://{container.name}:{PROCESSOR_PORT}"
    binding = container.attrs["NetworkSettings"]["Ports"][f"{PROCESSOR_PORT}/tcp"][0]
    return f"http://127.0.0.1:{binding['HostPort']}"


def listed_endpoint(row: dict[str, Any], network: str | None) -> str:
    """The endpoint from a container-list row; ``""`` when it publishes none."""
    if network is not None:
        names = row.get("Names") or [""]
        return f"http://{names[0].lstrip('/')}:{PROCESSOR_PORT}"
    for port in row.get("Ports") or []:
        if port.get("PrivatePort") == PROCESSOR_PORT and port.get("PublicPort"):
            return f"http://127.0.0.1:{port['PublicPort']}"
    return ""


async def log_tail(container: Container, lines: int) -> list[str]:
    """The container's last log lines; ``[]`` when the engine cannot give them."""
    with contextlib.suppress(DockerException):
        raw: bytes = await docker_call(container.logs, tail=lines)
        return raw.decode("utf-8", "replace").splitlines()[-lines:]
    return []


async def remove_container(client: docker.DockerClient, ref: str) -> None:
    """Force-remove; 404 (gone) and 409 (removal already in progress) are success."""
    try:
        container = await docker_call(client.containers.get, ref)
        await docker_call(container.remove, force=True)
    except NotFound:
        return
    except APIError as exc:
        if exc.status_code not in (404, 409):
            raise BackendUnavailable(f"could not remove container {ref[:12]}: {exc}") from exc


async def remove_dead(client: docker.DockerClient, row: dict[str, Any], lines: int) -> None:
    """Log an exited container's last lines (why its processor died), then remove it.

    A failure is logged and retried on the next listing.
    """
    tail: list[str] = []
    with contextlib.suppress(DockerException):
        raw: bytes = await docker_call(client.api.logs, row["Id"], tail=lines)
        tail = raw.decode("utf-8", "replace").splitlines()[-lines:]
    try:
        await remove_container(client, row["Id"])
    except BackendUnavailable as exc:
        log.warning("could not remove an exited container: %s", exc.message)
        return
    log.warning(
        "exited processor container removed",
        extra={
            "ref": row["Id"],
            "session_id": (row.get("Labels") or {}).get(SESSION_LABEL),
            "state": row.get("Status"),
            "log_tail": tail,
        },
    )
