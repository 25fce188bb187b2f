"""The ``swarm`` backend: one Docker Swarm service (one replica) per session.

For when one Docker host is not enough: the swarm places processors on its nodes. Services sit
on an attachable overlay network (``DOCKER_NETWORK``, required) that the manager joins, and are
reached by service name; nothing is published. Same labels, limits and readiness as the
``docker`` backend, which this reuses except for create, remove and listing (the
dockerspawner/SwarmSpawner split). Memory, CPU and pids limits, dropped capabilities, the
read-only root with a tmpfs and the non-root user apply; ``no-new-privileges`` does not, as
service specs before Engine API 1.44 have no field for it. Warm-pool members are bound to
their sessions in Redis, as with ``docker`` (``DockerBackend.bind``).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from typing import Any, ClassVar, Self

from docker.errors import APIError, NotFound
from docker.models.services import Service
from docker.types import EndpointSpec, Mount, Resources, RestartPolicy
from docker.utils import parse_bytes

from session_manager.backends.base import (
    MANAGER_LABEL,
    SESSION_LABEL,
    ProcessorHandle,
    ProcessorSpec,
)
from session_manager.backends.docker import DockerBackend
from session_manager.backends.docker_containers import PROCESSOR_PORT
from session_manager.errors import StartFailed
from session_manager.settings import Settings, SettingsError

__all__ = ("SwarmBackend",)

_LOG_TAIL_LINES = 40
_POLL_S = 0.1
_FAILED = frozenset({"failed", "rejected", "complete", "shutdown", "orphaned", "remove"})


class SwarmBackend(DockerBackend):
    """Processors as single-replica swarm services on an overlay network."""

    name = "swarm"
    _network_options: ClassVar[dict[str, Any]] = {"driver": "overlay", "attachable": True}

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Needs ``DOCKER_NETWORK``: services are reached on it by name."""
        if not settings.docker_network:
            raise SettingsError(
                "BACKEND=swarm needs DOCKER_NETWORK (an attachable overlay network)"
            )
        return super().from_settings(settings)

    async def start(self, spec: ProcessorSpec) -> ProcessorHandle:
        """Create the service; return once its ``/health`` names the processor."""
        await self._ensure_network()
        name = f"kato-{spec.processor_id[:40]}-{secrets.token_hex(3)}"
        env = {**spec.env, "HOST": "0.0.0.0", "PORT": str(PROCESSOR_PORT), "ALLOWED_HOSTS": name}
        service: Service = await self._docker(
            self._client.services.create,
            self.image,
            name=name,
            env=[f"{k}={v}" for k, v in env.items()],
            labels={SESSION_LABEL: spec.session_id, MANAGER_LABEL: self.manager_id},
            networks=[self.network],
            resources=self._resources(),
            restart_policy=RestartPolicy(condition="none"),
            # DNS round robin: the name resolves to the one task (no IPVS virtual IP needed).
            endpoint_spec=EndpointSpec(mode="dnsrr"),
            user="10001",
            read_only=True,
            cap_drop=["ALL"],
            mounts=[Mount(target="/tmp", source="", type="tmpfs")],  # noqa: S108
        )
        endpoint = f"http://{name}:{PROCESSOR_PORT}"
        try:
            reason = await self._wait_service(service, endpoint, spec.processor_id)
        except BaseException:
            await self._remove_service(service.id)
            raise
        if reason is not None:
            tail = await self._service_logs(service)
            await self._remove_service(service.id)
            raise StartFailed(
                f"processor service did not start: {reason}",
                processor_id=spec.processor_id,
                image=self.image,
                log_tail=tail,
            )
        return ProcessorHandle(
            backend=self.name, ref=service.id, endpoint=endpoint, session_id=spec.session_id
        )

    def _resources(self) -> Resources:
        resources = Resources(
            cpu_limit=int(self.limits.cpus * 1_000_000_000),
            mem_limit=parse_bytes(self.limits.memory),
        )
        resources["Limits"]["Pids"] = self.limits.pids  # Engine API 1.41; docker-py has no kwarg
        return resources

    async def stop(self, handle: ProcessorHandle) -> None:
        """Remove the service if it carries this manager's label; already gone is fine.

        A service of another deployment (another ``MANAGER_ID``) is never removed.
        """
        try:
            service = await self._docker(self._client.services.get, handle.ref)
        except NotFound:
            return
        labels = service.attrs.get("Spec", {}).get("Labels") or {}
        if labels.get(MANAGER_LABEL) == self.manager_id:
            await self._remove_service(handle.ref)
            await self._unbind(labels.get(SESSION_LABEL))

    async def is_alive(self, handle: ProcessorHandle) -> bool:
        """Whether the service exists and its task has not ended."""
        try:
            service = await self._docker(self._client.services.get, handle.ref)
        except NotFound:
            return False
        tasks = await self._docker(service.tasks)
        return any(t.get("Status", {}).get("State") not in _FAILED for t in tasks)

    async def exit_cause(self, handle: ProcessorHandle, processor_id: str) -> str | None:
        """Not read from swarm tasks (yet): never known."""
        return None

    async def list_owned(self) -> list[ProcessorHandle]:
        """Every service labelled as this manager's (a bound pool member with its session)."""
        services = await self._docker(
            self._client.services.list, filters={"label": f"{MANAGER_LABEL}={self.manager_id}"}
        )
        return await self._with_bound_sessions(
            [
                ProcessorHandle(
                    backend=self.name,
                    ref=service.id,
                    endpoint=f"http://{service.name}:{PROCESSOR_PORT}",
                    session_id=(service.attrs.get("Spec", {}).get("Labels") or {}).get(
                        SESSION_LABEL
                    ),
                )
                for service in services
            ]
        )

    async def _wait_service(self, service: Service, endpoint: str, processor_id: str) -> str | None:
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            if await self._probe.is_ready(endpoint, processor_id):
                return None
            tasks = await self._docker(service.tasks)
            for task in tasks:
                status = task.get("Status", {})
                if status.get("State") in _FAILED:
                    return (
                        f"task {status.get('State')}: {status.get('Err') or status.get('Message')}"
                    )
            if time.monotonic() > deadline:
                return f"no healthy answer within {self.start_timeout_s:g} s"
            await asyncio.sleep(_POLL_S)

    async def _service_logs(self, service: Service) -> list[str]:
        with contextlib.suppress(Exception):
            chunks = await self._docker(
                lambda: list(service.logs(stdout=True, stderr=True, tail=_LOG_TAIL_LINES))
            )
            text = b"".join(chunks).decode("utf-8", "replace")
            return text.splitlines()[-_LOG_TAIL_LINES:]
        return []

    async def _remove_service(self, ref: str) -> None:
        try:
            service = await self._docker(self._client.services.get, ref)
            await self._docker(service.remove)
        except NotFound:
            return
        except APIError as exc:
            if exc.status_code not in (404, 409):
                raise
