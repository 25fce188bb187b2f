"""The ``swarm`` backend: one Docker Swarm service (one replica) per session.

For when one Docker host is not enough: the swarm places processors on its nodes. Services sit
on an attachable overlay network (``DOCKER_NETWORK``, required) that the manager joins, and are
reached by service name; nothing is published. Same labels, limits and readiness as the
``docker`` backend, which this reuses except for create, remove and listing (the
dockerspawner/SwarmSpawner split). Memory, CPU and pids limits, dropped capabilities, the
read-only root with a tmpfs and the non-root user apply; ``no-new-privileges`` does not, as
service specs before Engine API 1.44 have no field for it. Warm-pool members are bound to
their sessions in Redis, as with ``docker`` (``DockerBackend.bind``).

Several nodes: placement follows ``SWARM_CONSTRAINTS``, ``SWARM_SPREAD`` and
``SWARM_MEMORY_RESERVATION``; each handle names its node (hostname), shown per session and
counted per node. A processor whose node is down or unreachable counts as lost (``is_alive``
and ``list_owned`` ask the swarm's node states), so the session is recovered on another node
from checkpoint and journal; its old service is removed, which the swarm carries out on that
node once it is back. Services never restart on their own (``RestartPolicy: none``): only the
manager starts a session's processor, so the swarm never makes two.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from typing import Any, ClassVar, Self

from docker.errors import APIError, NotFound
from docker.models.services import Service
from docker.types import EndpointSpec, Healthcheck, Mount, Resources, RestartPolicy
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

    constraints: tuple[str, ...] = ()
    spread: tuple[str, ...] = ()
    memory_reservation: str = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._placing: dict[str, int] = {}
        """Starts in flight per node id (``_place`` counts them as running)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Needs ``DOCKER_NETWORK``: services are reached on it by name."""
        if not settings.docker_network:
            raise SettingsError(
                "BACKEND=swarm needs DOCKER_NETWORK (an attachable overlay network)"
            )
        backend = super().from_settings(settings)
        backend.constraints = _items(settings.swarm_constraints)
        backend.spread = _items(settings.swarm_spread)
        backend.memory_reservation = settings.swarm_memory_reservation.strip()
        if backend.memory_reservation:
            try:
                parse_bytes(backend.memory_reservation)
            except Exception as exc:
                raise SettingsError(
                    f"SWARM_MEMORY_RESERVATION={settings.swarm_memory_reservation!r}: {exc}"
                ) from exc
        return backend

    async def start(self, spec: ProcessorSpec) -> ProcessorHandle:
        """Create the service on the node ``_place`` picks; return once ``/health`` names it."""
        await self._ensure_network()
        node = await self._place()
        self._placing[node] = self._placing.get(node, 0) + 1
        try:
            return await self._start_on(spec, node)
        finally:
            self._placing[node] -= 1

    async def _start_on(self, spec: ProcessorSpec, node: str) -> ProcessorHandle:
        name = f"kato-{spec.processor_id[:40]}-{secrets.token_hex(3)}"
        constraints = [*self.constraints, *([f"node.id=={node}"] if node else [])]
        env = {**spec.env, "HOST": "0.0.0.0", "PORT": str(PROCESSOR_PORT), "ALLOWED_HOSTS": name}
        service: Service = await self._docker(
            self._client.services.create,
            self.image,
            name=name,
            env=[f"{k}={v}" for k, v in env.items()],
            labels={SESSION_LABEL: spec.session_id, MANAGER_LABEL: self.manager_id},
            networks=[self.network],
            resources=self._resources(),
            constraints=constraints,
            preferences=[("spread", attribute) for attribute in self.spread],
            restart_policy=RestartPolicy(condition="none"),
            # The manager probes readiness and liveness itself. The image's HEALTHCHECK would
            # let the swarm shut a slow processor down (seen at load 15 on two cores): a
            # needless recovery, and a processor the manager did not choose to stop.
            healthcheck=Healthcheck(test=["NONE"]),
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
            backend=self.name,
            ref=service.id,
            endpoint=endpoint,
            session_id=spec.session_id,
            node=await self._node_of(service),
        )

    def _resources(self) -> Resources:
        resources = Resources(
            cpu_limit=int(self.limits.cpus * 1_000_000_000),
            mem_limit=parse_bytes(self.limits.memory),
            mem_reservation=parse_bytes(self.memory_reservation)
            if self.memory_reservation
            else None,
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
        """Whether the service has a task that has not ended, on a node that is up."""
        try:
            service = await self._docker(self._client.services.get, handle.ref)
        except NotFound:
            return False
        tasks = await self._docker(service.tasks)
        nodes = await self._nodes()
        return any(_live(task, nodes) for task in tasks)

    async def exit_cause(self, handle: ProcessorHandle, processor_id: str) -> str | None:
        """Not read from swarm tasks (yet): never known."""
        return None

    async def _place(self) -> str:
        """The node for the next processor: fewest of ours, after ``SWARM_SPREAD``'s groups.

        The swarm's own scheduler balances the tasks of one service; with one single-task
        service per session it piled most of them on one node here (21 of 30). So the manager
        picks among the ready, active nodes that meet ``SWARM_CONSTRAINTS``: the value of the
        first spread attribute with the fewest of this deployment's processors, then the node
        with the fewest (starts in flight included), and pins the service to it. '' when no
        node qualifies (or a constraint names an attribute not evaluated here): the swarm
        places it.
        """
        rows: list[dict[str, Any]] = await self._docker(self._client.api.nodes)
        nodes: dict[str, dict[str, Any]] = {row["ID"]: row for row in rows if _schedulable(row)}
        verdicts = [_meets(row, self.constraints) for row in nodes.values()]
        if None in verdicts:
            return ""
        nodes = {i: row for (i, row), ok in zip(nodes.items(), verdicts, strict=True) if ok}
        if not nodes:
            return ""
        load = dict.fromkeys(nodes, 0)
        for node_id in (await self._live_tasks()).values():
            if node_id in load:
                load[node_id] += 1
        for node_id, starting in self._placing.items():
            if node_id in load:
                load[node_id] += starting
        groups: dict[str | None, int] = {}
        for node_id, row in nodes.items():
            value = _attribute(row, self.spread[0]) if self.spread else None
            groups[value] = groups.get(value, 0) + load[node_id]

        def order(node_id: str) -> tuple[int, int, str]:
            value = _attribute(nodes[node_id], self.spread[0]) if self.spread else None
            return groups[value], load[node_id], node_id

        return min(nodes, key=order)

    async def _live_tasks(self) -> dict[str, str]:
        """Service id -> node id of each of this deployment's services with a live task."""
        services = await self._docker(
            self._client.services.list, filters={"label": f"{MANAGER_LABEL}={self.manager_id}"}
        )
        if not services:
            return {}
        ours = {service.id for service in services}
        tasks: list[dict[str, Any]] = await self._docker(self._client.api.tasks)
        nodes = await self._nodes()
        return {
            t["ServiceID"]: t.get("NodeID", "")
            for t in tasks
            if t.get("ServiceID") in ours and _live(t, nodes)
        }

    async def list_owned(self) -> list[ProcessorHandle]:
        """Every service labelled as this manager's with a live task, and that task's node.

        A service whose task ended or whose node is down is left out: its session counts as
        lost (recovered elsewhere; the recovery removes the service). A bound pool member is
        listed with its session.
        """
        services = await self._docker(
            self._client.services.list, filters={"label": f"{MANAGER_LABEL}={self.manager_id}"}
        )
        if not services:
            return []
        tasks: list[dict[str, Any]] = await self._docker(self._client.api.tasks)
        nodes = await self._nodes()
        where = {t.get("ServiceID"): t.get("NodeID", "") for t in tasks if _live(t, nodes)}
        return await self._with_bound_sessions(
            [
                ProcessorHandle(
                    backend=self.name,
                    ref=service.id,
                    endpoint=f"http://{service.name}:{PROCESSOR_PORT}",
                    session_id=(service.attrs.get("Spec", {}).get("Labels") or {}).get(
                        SESSION_LABEL
                    ),
                    node=nodes.get(where[service.id], ("", ""))[0],
                )
                for service in services
                if service.id in where
            ]
        )

    async def _nodes(self) -> dict[str, tuple[str, str]]:
        """Node id -> (hostname, state: ``ready``, ``down``, ``unknown``, ``disconnected``)."""
        rows: list[dict[str, Any]] = await self._docker(self._client.api.nodes)
        return {
            row["ID"]: (
                row.get("Description", {}).get("Hostname", row["ID"][:12]),
                row.get("Status", {}).get("State", "unknown"),
            )
            for row in rows
        }

    async def _node_of(self, service: Service) -> str:
        """The hostname of the node the service's live task runs on ('' if none yet)."""
        tasks = await self._docker(service.tasks)
        nodes = await self._nodes()
        for task in tasks:
            if _live(task, nodes):
                return nodes[task["NodeID"]][0]
        return ""

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


def _items(value: str) -> tuple[str, ...]:
    """A comma-separated setting's items, blanks dropped."""
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _live(task: dict[str, Any], nodes: dict[str, tuple[str, str]]) -> bool:
    """A task that has not ended, assigned to a node the swarm sees as up."""
    state = task.get("Status", {}).get("State")
    if state in _FAILED or task.get("DesiredState") in ("shutdown", "remove"):
        return False
    node = nodes.get(task.get("NodeID", ""))
    return node is not None and node[1] == "ready"


def _schedulable(row: dict[str, Any]) -> bool:
    """A node the swarm sees as up and that takes new tasks."""
    return bool(
        row.get("Status", {}).get("State") == "ready"
        and row.get("Spec", {}).get("Availability") == "active"
    )


def _attribute(row: dict[str, Any], name: str) -> str | None:
    """A node attribute as swarm constraints name it; ``None`` when not evaluated here."""
    spec, description = row.get("Spec", {}), row.get("Description", {})
    if name.startswith("node.labels."):
        return str((spec.get("Labels") or {}).get(name.removeprefix("node.labels."), ""))
    if name.startswith("engine.labels."):
        labels = description.get("Engine", {}).get("Labels") or {}
        return str(labels.get(name.removeprefix("engine.labels."), ""))
    simple = {
        "node.id": row.get("ID"),
        "node.hostname": description.get("Hostname"),
        "node.role": spec.get("Role"),
        "node.platform.os": description.get("Platform", {}).get("OS"),
        "node.platform.arch": description.get("Platform", {}).get("Architecture"),
    }
    value = simple.get(name)
    return None if value is None else str(value)


def _meets(row: dict[str, Any], constraints: tuple[str, ...]) -> bool | None:
    """Whether the node meets every ``a==b`` / ``a!=b`` constraint; ``None``: cannot tell."""
    for constraint in constraints:
        op = "!=" if "!=" in constraint else "=="
        name, _, wanted = (part.strip() for part in constraint.partition(op))
        value = _attribute(row, name)
        if value is None:
            return None
        if (value == wanted) != (op == "=="):
            return False
    return True
