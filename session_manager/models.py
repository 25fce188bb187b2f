"""Internal values: a session's record as Redis holds it, its statuses and why sessions end.

``ProcessorHandle`` lives here because the record stores one; ``backends.base`` re-exports it
for backends, so values never depend on a backend module.
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec

__all__ = (
    "DEFAULT_TENANT",
    "EndReason",
    "ProcessorHandle",
    "SessionRecord",
    "SessionStatus",
    "Tenant",
    "Tombstone",
)


DEFAULT_TENANT = "default"
"""The tenant of the generated key, of ``CREATE_AUTH=none`` creates and of records older than
tenants (their hash has no ``tenant`` field)."""


class Tenant(msgspec.Struct, frozen=True, kw_only=True):
    """An application on this deployment and its quotas (``session_manager.tenants`` loads them).

    ``max_sessions`` counts the tenant's live sessions (the deployment's ``MAX_SESSIONS`` still
    holds for all tenants together); ``max_sessions_per_user`` counts one of its users'.
    ``max_memory_mb`` bounds the sum of its live sessions' memory limits (each session's
    processor gets ``PROCESSOR_MEMORY_LIMIT``); ``None``: no memory quota.
    """

    name: str
    max_sessions: int
    max_sessions_per_user: int
    max_memory_mb: int | None = None

    def sessions_within_memory(self, memory_limit_bytes: int) -> int | None:
        """How many sessions of ``memory_limit_bytes`` each fit in ``max_memory_mb``."""
        if self.max_memory_mb is None or memory_limit_bytes <= 0:
            return None
        return self.max_memory_mb * 1024 * 1024 // memory_limit_bytes


class ProcessorHandle(msgspec.Struct, frozen=True, kw_only=True):
    """How to reach and remove one running processor; stored in the session's Redis record.

    ``ref`` is the backend's own id (pid for ``process``, container id for ``docker``,
    service id for ``swarm``, processor id for ``static``); ``endpoint`` is the base URL
    the proxy talks to, e.g. ``http://127.0.0.1:41234``.
    """

    backend: str
    ref: str
    endpoint: str
    session_id: str | None = None
    node: str = ""
    """The host it runs on when the backend spans several (``swarm``: the node's hostname)."""


class SessionStatus(enum.StrEnum):
    """Where a session is in ``starting -> ready -> (hibernating -> hibernated -> starting)*``.

    ``terminating`` is the last status before the record is removed and a tombstone left.
    """

    STARTING = "starting"
    READY = "ready"
    HIBERNATING = "hibernating"
    HIBERNATED = "hibernated"
    TERMINATING = "terminating"


class EndReason(enum.StrEnum):
    """Why a session ended; kept in its tombstone and answered with ``410``."""

    DELETED = "deleted"
    IDLE = "idle"
    MAX_AGE = "max_age"
    PROCESSOR_LOST = "processor_lost"
    START_FAILED = "start_failed"
    MANAGER_STOPPED = "manager_stopped"
    """The last manager of the deployment stopped with ``SHUTDOWN_ACTION=delete``."""


class Tombstone(msgspec.Struct, frozen=True, kw_only=True):
    """What is left of an ended session while its TTL runs."""

    reason: str
    ended_at: int
    details: dict[str, Any] = {}


class SessionRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One session as stored in its Redis hash (times in epoch ms).

    ``tenant`` is the application (API key's tenant) that created it; ``user_id`` is that
    tenant's name for the user, so limits and listings key users by (tenant, user_id).
    ``backend``/``ref``/``endpoint`` are empty until a processor is ready; ``token_hash`` is
    the SHA-256 hex of the session token (empty with ``SESSION_AUTH=none``). ``idle_deadline``
    and ``hard_deadline`` come from the deadline sorted sets (``None`` when not scheduled).
    """

    session_id: str
    user_id: str
    kb_id: str
    processor_id: str
    status: SessionStatus
    created_at: int
    last_activity: int
    status_changed_at: int
    idle_timeout_s: int
    max_age_s: int
    token_hash: str = ""
    tenant: str = DEFAULT_TENANT
    backend: str = ""
    ref: str = ""
    endpoint: str = ""
    node: str = ""
    """Where the processor runs (``ProcessorHandle.node``); empty on single-host backends."""
    genes: dict[str, Any] = {}
    labels: dict[str, str] = {}
    idle_deadline: int | None = None
    hard_deadline: int | None = None
    last_event: str = ""
    """The last thing that happened to the session's processor that its owner should know
    (``processor_out_of_memory``), with its time ``last_event_at``; empty while none did."""
    last_event_at: int = 0
    out_of_memory_count: int = 0
    """How many of the session's processors exited at their memory limit."""
    epoch: int = 0
    """Which start of the session's processor serves it: bumped, in the same script, by the
    transition that claims every restart (restore, recovery), so a processor of an older
    epoch is fenced: its secret is not the one the manager sends, and the journal refuses a
    write acknowledged through a route of an older epoch. 0 for records older than the field."""

    @classmethod
    def starting(
        cls,
        session_id: str,
        user_id: str,
        now_ms: int,
        *,
        idle_timeout_s: int,
        max_age_s: int,
        **fields: Any,
    ) -> SessionRecord:
        """A new session's record as reserved: ``starting`` since ``now_ms``.

        Its knowledge base and processor are named after the session unless ``fields`` say
        otherwise (a ``kb_id`` of None too); every other field is as given or its default.
        """
        return cls(
            session_id=session_id,
            user_id=user_id,
            kb_id=fields.pop("kb_id", None) or session_id,
            processor_id=fields.pop("processor_id", session_id),
            status=SessionStatus.STARTING,
            created_at=now_ms,
            last_activity=now_ms,
            status_changed_at=now_ms,
            idle_timeout_s=idle_timeout_s,
            max_age_s=max_age_s,
            **fields,
        )

    @property
    def handle(self) -> ProcessorHandle | None:
        """The processor this session runs on, when it has one."""
        if not self.ref:
            return None
        return ProcessorHandle(
            backend=self.backend,
            ref=self.ref,
            endpoint=self.endpoint,
            session_id=self.session_id,
            node=self.node,
        )
