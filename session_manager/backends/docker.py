"""The ``docker`` backend: one container per session, through the Docker SDK.

Every blocking SDK call goes through ``docker_call`` (run on threads of its own, which
also turns an unreachable engine into ``BackendUnavailable``). Containers carry two labels,
``io.kato.session`` and ``io.kato.manager``; ``list_owned`` selects by the latter.

Networking, one of:
* ``DOCKER_NETWORK`` set: containers join that bridge network and publish nothing; the manager
  must be on the same network (compose) and reaches them by container name.
* ``DOCKER_PUBLISH=loopback``: port 8000 is published on ``127.0.0.1`` only, on a random host
  port, for a manager running on the host.

Hardening: memory, CPU and pids limits, every capability dropped, ``no-new-privileges``,
read-only root filesystem with a small ``/tmp`` tmpfs, the image's non-root user.

Warm pool (issue 15): a pool member's ``io.kato.session`` label is its pool id, and a label
cannot change once the container runs. ``bind`` keeps the session it is handed to in Redis
(``keep_bindings``: ``store.bindings``); ``list_owned`` reports a bound member with its
session's id, so the reconciler and the leak checks see it as that session's container, and
an unbound one with its pool id (the pool's own, or an orphan). ``stop`` drops the binding.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, ClassVar, Self, TypeVar

import docker
import msgspec
from docker.errors import APIError, DockerException, NotFound
from docker.models.containers import Container

from processor_image.contract import EXIT_OUT_OF_MEMORY
from session_manager.backends.base import (
    MANAGER_LABEL,
    OUT_OF_MEMORY,
    PROBE_TIMEOUT_S,
    SESSION_LABEL,
    ProcessorHandle,
    ProcessorSpec,
    SessionBindings,
    is_pool_id,
)
from session_manager.backends.docker_containers import (
    ContainerLimits,
    docker_call,
    endpoint_of,
    listed_endpoint,
    log_tail,
    remove_container,
    remove_dead,
    run_options,
)
from session_manager.errors import BackendUnavailable, KatoError, StartFailed
from session_manager.processor_client import ProcessorClient
from session_manager.settings import Settings, SettingsError

__all__ = ("DockerBackend",)

log = logging.getLogger(__name__)

T = TypeVar("T")

_LOG_TAIL_LINES = 40
_DEAD_LOG_LINES = 10
_POLL_S = 0.05
_HEALTH_POLL_S = 0.02
_INSPECT_S = 0.25


class DockerBackend:
    """Processors as hardened containers on one Docker engine."""

    name = "docker"
    _network_options: ClassVar[dict[str, Any]] = {"driver": "bridge"}

    def __init__(
        self,
        *,
        client: docker.DockerClient,
        image: str,
        manager_id: str,
        network: str | None,
        memory_limit: str,
        cpus: float,
        pids_limit: int,
        start_timeout_s: float,
        stop_timeout_s: float,
    ) -> None:
        self._client = client
        self.image = image
        self.manager_id = manager_id
        self.network = network
        self.limits = ContainerLimits(memory=memory_limit, cpus=cpus, pids=pids_limit)
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._probe = ProcessorClient(read_timeout_s=PROBE_TIMEOUT_S)
        self._network_ready = network is None
        self._starting: set[str] = set()  # names of containers whose start() is running
        self.bindings: SessionBindings | None = None
        """Which session each claimed pool member serves (``keep_bindings``)."""

    _docker = staticmethod(docker_call)

    def keep_bindings(self, bindings: SessionBindings) -> None:
        """Keep pool members' sessions in ``bindings`` (the app gives it the Redis one).

        Needed whenever pool members may exist, also without a pool now (a restart with
        ``WARM_POOL_SIZE=0`` must still see a claimed container as its session's).
        """
        self.bindings = bindings

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """The backend for these settings; the engine comes from ``DOCKER_HOST`` or the socket."""
        if settings.docker_network is None and settings.docker_publish == "none":
            raise SettingsError(
                "BACKEND=docker needs DOCKER_NETWORK (a network the manager shares with the "
                "processors) or DOCKER_PUBLISH=loopback; with neither no processor is reachable"
            )
        try:
            client = docker.from_env()
        except DockerException as exc:
            raise BackendUnavailable(f"Docker engine not reachable: {exc}") from exc
        return cls(
            client=client,
            image=settings.docker_image,
            manager_id=settings.manager_id,
            network=settings.docker_network,
            memory_limit=settings.processor_memory_limit,
            cpus=settings.processor_cpus,
            pids_limit=settings.processor_pids_limit,
            start_timeout_s=settings.start_timeout_s,
            stop_timeout_s=settings.stop_timeout_s,
        )

    # -- the Backend protocol ---------------------------------------------------------------

    async def start(self, spec: ProcessorSpec) -> ProcessorHandle:
        """Create and start the container; return once ``/health`` names the processor.

        Whatever happens (engine error, failed health, cancellation, even while the engine
        is still creating the container), the container is removed before this returns.
        """
        await self._ensure_network()
        options = run_options(
            spec,
            image=self.image,
            manager_id=self.manager_id,
            network=self.network,
            limits=self.limits,
        )
        name: str = options["name"]
        self._starting.add(name)
        try:
            container = await self._create(spec.processor_id, options)
            endpoint = await self._endpoint(container)
            reason = await self._wait_healthy(container, endpoint, spec.processor_id)
            if reason is not None:
                tail = await log_tail(container, _LOG_TAIL_LINES)
                raise StartFailed(
                    f"processor container did not start: {reason}",
                    processor_id=spec.processor_id,
                    image=self.image,
                    log_tail=tail,
                )
        except BaseException:
            with contextlib.suppress(BackendUnavailable):  # keep the original error
                await remove_container(self._client, name)
            raise
        finally:
            self._starting.discard(name)
        return ProcessorHandle(
            backend=self.name, ref=container.id, endpoint=endpoint, session_id=spec.session_id
        )

    async def stop(self, handle: ProcessorHandle) -> None:
        """Stop (SIGTERM, then SIGKILL after the grace) and remove; already gone is fine.

        A container without this manager's label is left alone: the handle is not ours.
        """
        container = await self._owned(handle.ref)
        if container is None:
            return
        with contextlib.suppress(NotFound, APIError):
            await self._docker(container.stop, timeout=max(1, round(self.stop_timeout_s)))
        await remove_container(self._client, container.id)
        await self._unbind(container.labels.get(SESSION_LABEL))

    async def bind(self, handle: ProcessorHandle, session_id: str) -> ProcessorHandle:
        """Hand a pool member (``handle.session_id`` is its pool id) to ``session_id``.

        Returns the handle as the session knows it; ``stop`` and ``is_alive`` accept either.
        """
        pool_id = str(handle.session_id)
        if self.bindings is None or not is_pool_id(pool_id):
            raise ValueError(f"cannot bind {pool_id!r}: not a pool member, or no bindings kept")
        await self.bindings.bind(pool_id, session_id)
        return ProcessorHandle(
            backend=self.name, ref=handle.ref, endpoint=handle.endpoint, session_id=session_id
        )

    async def is_alive(self, handle: ProcessorHandle) -> bool:
        """Whether this manager's container exists and runs."""
        container = await self._owned(handle.ref)
        return container is not None and container.status in ("created", "running", "restarting")

    async def exit_cause(self, handle: ProcessorHandle, processor_id: str) -> str | None:
        """``OUT_OF_MEMORY`` when the container's cgroup killed it or it exited for memory."""
        try:
            container = await self._owned(handle.ref)
        except APIError:  # the engine would not say: unknown
            return None
        if container is None:
            return None
        state = container.attrs.get("State", {})
        if state.get("OOMKilled") or state.get("ExitCode") == EXIT_OUT_OF_MEMORY:
            return OUT_OF_MEMORY
        return None

    async def list_owned(self) -> list[ProcessorHandle]:
        """Every live container labelled as this manager's, in one engine call.

        One list call (not an inspect per container), so a container removed meanwhile cannot
        fail the listing. A container that has exited is a dead processor: it is not listed
        (the reconciler then finds its session's processor gone and replaces or ends it) and
        is removed here, unless a start on this instance is still reading its log tail.
        """
        rows: list[dict[str, Any]] = await self._docker(
            self._client.api.containers,
            all=True,
            filters={"label": f"{MANAGER_LABEL}={self.manager_id}"},
        )
        handles = []
        for row in rows:
            label = (row.get("Labels") or {}).get(SESSION_LABEL)
            if row.get("State") in ("exited", "dead"):
                if not self._starting.intersection(n.lstrip("/") for n in row.get("Names") or []):
                    await remove_dead(self._client, row, _DEAD_LOG_LINES)
                    await self._unbind(label)
                continue
            handles.append(
                ProcessorHandle(
                    backend=self.name,
                    ref=row["Id"],
                    endpoint=listed_endpoint(row, self.network),
                    session_id=label,
                )
            )
        return await self._with_bound_sessions(handles)

    async def ping(self) -> bool:
        """Whether the engine answers."""
        try:
            return bool(await self._docker(self._client.ping))
        except (BackendUnavailable, APIError):
            return False

    async def close(self) -> None:
        """Close the SDK and health clients; containers keep running."""
        await self._probe.aclose()
        with contextlib.suppress(DockerException):
            await asyncio.to_thread(self._client.close)

    # -- helpers ----------------------------------------------------------------------------

    async def _with_bound_sessions(self, handles: list[ProcessorHandle]) -> list[ProcessorHandle]:
        """``handles`` with each bound pool member's session id instead of its pool id.

        Raises ``StoreUnavailable`` when Redis cannot say: a claimed container must never be
        listed as unassigned (the reconciler would take it for an orphan).
        """
        pool_ids = [str(h.session_id) for h in handles if is_pool_id(h.session_id)]
        if not pool_ids or self.bindings is None:
            return handles
        bound = await self.bindings.sessions_of(pool_ids)
        return [
            msgspec.structs.replace(h, session_id=bound[str(h.session_id)])
            if h.session_id in bound
            else h
            for h in handles
        ]

    async def _unbind(self, label: str | None) -> None:
        """Drop a removed pool member's binding; a Redis outage leaves a harmless stale one."""
        if self.bindings is None or not is_pool_id(label):
            return
        try:
            await self.bindings.forget(str(label))
        except KatoError as exc:
            log.warning("pool binding not dropped", extra={"pool_id": label, "error": exc.message})

    async def _create(self, processor_id: str, options: dict[str, Any]) -> Container:
        """``containers.run``; an engine refusal (no such image, bad option) is ``StartFailed``.

        Its thread cannot be cancelled: on cancellation this waits for it to finish, so that
        the caller's removal by name finds whatever the engine created.
        """
        run = asyncio.ensure_future(self._docker(self._client.containers.run, **options))
        try:
            return await asyncio.shield(run)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await run
            raise
        except (NotFound, APIError) as exc:
            raise StartFailed(
                f"the engine could not run image {self.image}: {exc.explanation or exc}",
                processor_id=processor_id,
                image=self.image,
                log_tail=[],
            ) from exc

    async def _ensure_network(self) -> None:
        if self._network_ready or self.network is None:
            return
        try:
            await self._docker(self._client.networks.get, self.network)
        except NotFound:
            with contextlib.suppress(APIError):  # created meanwhile by another replica
                await self._docker(
                    self._client.networks.create,
                    self.network,
                    labels={MANAGER_LABEL: self.manager_id},
                    **self._network_options,
                )
        self._network_ready = True

    async def _endpoint(self, container: Container) -> str:
        """The URL the manager reaches the processor at (waits for the published port).

        On a network the name is known at once; a published port needs a fresh inspect.
        """
        if self.network is not None:
            return endpoint_of(container, self.network)
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            await self._docker(container.reload)
            with contextlib.suppress(KeyError, TypeError, IndexError):
                return endpoint_of(container, self.network)
            if container.status == "exited" or time.monotonic() > deadline:
                return ""
            await asyncio.sleep(_POLL_S)

    async def _wait_healthy(
        self, container: Container, endpoint: str, processor_id: str
    ) -> str | None:
        """``None`` once ``/health`` names the processor; else why it never will.

        ``/health`` is tried every 20 ms (a refused connection is cheap); the engine is asked
        whether the container exited only every 250 ms, so that a burst of starts does not
        keep the engine busy answering inspects.
        """
        deadline = time.monotonic() + self.start_timeout_s
        next_inspect = time.monotonic() + _INSPECT_S
        while True:
            if endpoint and await self._probe.is_ready(endpoint, processor_id):
                return None
            now = time.monotonic()
            if now >= next_inspect or not endpoint:
                next_inspect = now + _INSPECT_S
                await self._docker(container.reload)
                if container.status in ("exited", "dead"):
                    code = container.attrs.get("State", {}).get("ExitCode")
                    return f"container exited with code {code}"
            if now > deadline:
                return f"no healthy answer within {self.start_timeout_s:g} s"
            await asyncio.sleep(_HEALTH_POLL_S)

    async def _owned(self, ref: str) -> Container | None:
        """The container ``ref`` names if it exists and carries this manager's label."""
        try:
            container: Container = await self._docker(self._client.containers.get, ref)
        except NotFound:
            return None
        return container if container.labels.get(MANAGER_LABEL) == self.manager_id else None
