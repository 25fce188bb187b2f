"""The Backend protocol: where processors run, and the two values that cross it.

``ProcessorHandle`` is defined in ``session_manager.models`` (a session's record stores one)
and re-exported here for backend implementations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import msgspec

from session_manager.models import ProcessorHandle

__all__ = (
    "MANAGER_LABEL",
    "OUT_OF_MEMORY",
    "POOL_ID_PREFIX",
    "PROBE_TIMEOUT_S",
    "SESSION_LABEL",
    "Backend",
    "ProcessorHandle",
    "ProcessorSpec",
    "SessionBindings",
    "is_pool_id",
)

SESSION_LABEL = "io.kato.session"
MANAGER_LABEL = "io.kato.manager"
OUT_OF_MEMORY = "out_of_memory"
"""What ``exit_cause`` answers for a processor that exited at its memory limit."""
PROBE_TIMEOUT_S = 1.0
"""How long one readiness probe (``GET /health`` during ``start``) may take before a retry."""
POOL_ID_PREFIX = "pool-"
"""Warm-pool processors' ids (and session markers) until they are claimed; session ids are hex."""


def is_pool_id(value: str | None) -> bool:
    """Whether a processor id or session marker names a warm-pool processor."""
    return value is not None and value.startswith(POOL_ID_PREFIX)


class SessionBindings(Protocol):
    """Where a backend whose labels cannot change keeps which session a pool member serves.

    ``session_manager.store.bindings.PoolBindings`` (Redis) for the docker and swarm backends.
    """

    async def bind(self, pool_id: str, session_id: str) -> None:
        """Record that the pool member ``pool_id`` now serves ``session_id``."""
        ...

    async def sessions_of(self, pool_ids: Sequence[str]) -> dict[str, str]:
        """The bound ones among ``pool_ids``: pool id -> session id."""
        ...

    async def forget(self, pool_id: str) -> None:
        """Drop the binding of a member that is gone."""
        ...


class ProcessorSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What to start for one session.

    ``env`` holds every processor environment variable (``PROCESSOR_ID``, ``KB_ID``,
    ``STORAGE``, ``MONGO_URL``, gene variables such as ``RECALL_THRESHOLD``); a backend adds
    only what depends on where it runs (``HOST``, ``PORT``).
    """

    session_id: str
    processor_id: str
    kb_id: str
    env: dict[str, str]


class Backend(Protocol):
    """Starts, stops and lists processors. Every method is safe to call on any handle.

    * ``start`` returns only once the processor's ``/health`` answers (probed through
      ``ProcessorClient.is_ready``, which checks the id it answers with); on failure it removes
      what it started and raises ``StartFailed`` with the processor's last output lines in
      ``details["log_tail"]``.
    * ``stop`` is idempotent: a processor that is already gone is not an error. It stops only
      a processor carrying this manager's id (``MANAGER_ID`` or the deployment id); any other
      is left alone, whatever handle names it.
    * ``is_alive`` is True while the processor runs (it does not probe ``/health``).
    * ``list_owned`` returns every processor carrying this manager's label/id, with
      ``session_id`` filled in, including ones started before a manager restart.
    * ``exit_cause`` says why a processor that is gone stopped, when the backend can tell:
      ``OUT_OF_MEMORY`` for one that reached its memory limit (it exits with
      ``processor_image.contract.EXIT_OUT_OF_MEMORY``, or its cgroup killed it); else ``None``.
    * ``ping`` is True when the backend itself is reachable (for ``/ready``).
    """

    name: str

    async def start(self, spec: ProcessorSpec) -> ProcessorHandle:
        """Start a processor and wait until it is healthy."""
        ...

    async def stop(self, handle: ProcessorHandle) -> None:
        """Remove the processor; already gone is fine."""
        ...

    async def is_alive(self, handle: ProcessorHandle) -> bool:
        """Whether the processor still runs."""
        ...

    async def list_owned(self) -> list[ProcessorHandle]:
        """Every processor this manager owns."""
        ...

    async def exit_cause(self, handle: ProcessorHandle, processor_id: str) -> str | None:
        """Why the processor of ``handle`` (id ``processor_id``) stopped, if known."""
        ...

    async def ping(self) -> bool:
        """Whether the backend is reachable."""
        ...

    async def close(self) -> None:
        """Release clients; running processors are left alone."""
        ...
