"""Every request and response body of the session and admin APIs (msgspec Structs)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from processor_image import contract
from session_manager.clock import iso
from session_manager.errors import InvalidGene, UnknownGeneName
from session_manager.models import SessionRecord
from session_manager.pool.warm import PoolStats

__all__ = (
    "GENE_NAMES",
    "AdminSession",
    "AdminSessionPage",
    "CreateSession",
    "CreatedSession",
    "Genes",
    "KeepaliveReply",
    "RotatedToken",
    "SessionInfo",
    "SessionUrls",
    "SnapshotStats",
    "Stats",
    "checked_genes",
    "iso",
)

Name = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@:-]*$")]
KbId = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")]
LabelKey = Annotated[
    str, Meta(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
]
LabelValue = Annotated[str, Meta(max_length=63, pattern=r"^[A-Za-z0-9._:/-]*$")]
Seconds = Annotated[int, Meta(ge=1)]


def _genes_doc() -> str:
    rules = "; ".join(f"{name}: {rule.expected()}" for name, rule in contract.GENE_RULES.items())
    aliases = ", ".join(f"{alias} for {name}" for alias, name in contract.GENE_ALIASES.items())
    return (
        f"Processor genes set at start (docs/processor-api.md#genes); unset ones keep defaults. "
        f"{rules}. Also accepted: {aliases}. Checked by the processor's own validator: "
        f"400 HTTP_400 for an unknown name, 400 INVALID_GENE_VALUE for a bad value."
    )


Genes = Annotated[dict[str, Any], Meta(description=_genes_doc())]
GENE_NAMES = tuple(contract.GENE_RULES)
"""Every gene by manifest key: what a live-genes read asks the processor for."""
"""Gene name -> value; checked by ``checked_genes``, the processor's own validator."""


def checked_genes(genes: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The genes by manifest key, checked as ``/genes/update`` checks them, or a 400."""
    if genes is None:
        return None
    try:
        return contract.validate_genes(genes)
    except contract.UnknownGene as exc:
        raise UnknownGeneName(exc.message) from exc
    except contract.GeneError as exc:
        raise InvalidGene(exc.message) from exc


class CreateSession(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /session/create``; timeouts above the server's ``MAX_AGE_S`` are capped.

    ``user_id`` is the calling tenant's name for its user (limits count per tenant and user);
    ``kb_id`` names a knowledge base the tenant owns or claims now (another tenant's: 403);
    without it the session gets a private one, named after the session, that no other session
    may name.
    """

    user_id: Name
    kb_id: KbId | None = None
    genes: Genes | None = None
    idle_timeout_s: Seconds | None = None
    max_age_s: Seconds | None = None
    labels: Annotated[dict[LabelKey, LabelValue], Meta(max_length=16)] = {}


class SessionUrls(msgspec.Struct, frozen=True, kw_only=True):
    """Where the session's processor is reached through the manager."""

    http: str
    ws: str


InitialGenes = Annotated[
    dict[str, Any],
    Meta(
        description="The genes given at create (unchanged by later /genes/update calls); "
        "every other gene started at its default."
    ),
]
LiveGenes = Annotated[
    dict[str, Any] | None,
    Meta(
        description="Every gene's current value, read from the processor when the single-"
        "session view is asked with ?live_genes=true and the session is ready; else null."
    ),
]


class SessionInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A session as its owner sees it (never the token).

    ``genes`` are the ones given at create; ``live_genes`` are what the processor runs with
    now (after any ``/genes/update``), filled in by the single-session views on request.
    """

    session_id: str
    tenant: str
    user_id: str
    processor_id: str
    kb_id: str
    status: str
    created_at: str
    last_activity: str
    idle_timeout_s: int
    max_age_s: int
    idle_expires_at: str | None
    expires_at: str
    genes: InitialGenes
    labels: dict[str, str]
    urls: SessionUrls
    live_genes: LiveGenes = None

    @classmethod
    def of(
        cls, record: SessionRecord, base_url: str, *, live_genes: dict[str, Any] | None = None
    ) -> SessionInfo:
        """The public view of ``record``; ``base_url`` is the manager's (``PUBLIC_URL``)."""
        return cls(**_info_fields(record, base_url), live_genes=live_genes)


def _info_fields(record: SessionRecord, base_url: str) -> dict[str, Any]:
    base = base_url.rstrip("/")
    ws_base = "ws" + base.removeprefix("http")
    return {
        "session_id": record.session_id,
        "tenant": record.tenant,
        "user_id": record.user_id,
        "processor_id": record.processor_id,
        "kb_id": record.kb_id,
        "status": str(record.status),
        "created_at": iso(record.created_at),
        "last_activity": iso(record.last_activity),
        "idle_timeout_s": record.idle_timeout_s,
        "max_age_s": record.max_age_s,
        "idle_expires_at": iso(record.idle_deadline),
        "expires_at": iso(record.created_at + record.max_age_s * 1000),
        "genes": record.genes,
        "labels": record.labels,
        "urls": SessionUrls(
            http=f"{base}/session/{record.session_id}/",
            ws=f"{ws_base}/session/{record.session_id}/ws",
        ),
    }


class CreatedSession(SessionInfo, frozen=True, kw_only=True):
    """``201``/``202`` reply to a create: the record plus the token, shown this once."""

    token: str | None

    @classmethod
    def of_new(cls, record: SessionRecord, base_url: str, token: str | None) -> CreatedSession:
        """The create reply."""
        return cls(**_info_fields(record, base_url), token=token)


class KeepaliveReply(msgspec.Struct, frozen=True, kw_only=True):
    """The deadlines after a keepalive."""

    session_id: str
    status: str
    last_activity: str
    idle_expires_at: str | None
    expires_at: str

    @classmethod
    def of(cls, record: SessionRecord) -> KeepaliveReply:
        """The reply for ``record`` as the keepalive left it."""
        return cls(
            session_id=record.session_id,
            status=str(record.status),
            last_activity=iso(record.last_activity) or "",
            idle_expires_at=iso(record.idle_deadline),
            expires_at=iso(record.created_at + record.max_age_s * 1000) or "",
        )


class RotatedToken(msgspec.Struct, frozen=True, kw_only=True):
    """``POST /session/{id}/token``: the new token, shown this once; the old one is void."""

    session_id: str
    token: str


class AdminSession(SessionInfo, frozen=True, kw_only=True):
    """A session as an admin sees it: where its processor runs, too."""

    backend: str
    ref: str
    endpoint: str
    status_changed_at: str
    last_event: str | None = None
    """The last event of the session's processors (``processor_out_of_memory``), if any."""
    last_event_at: str | None = None
    out_of_memory_count: int = 0
    """How many of its processors exited at their memory limit (``PROCESSOR_MEMORY_LIMIT``)."""

    @classmethod
    def of_record(
        cls, record: SessionRecord, base_url: str, *, live_genes: dict[str, Any] | None = None
    ) -> AdminSession:
        """The admin view of ``record`` (``live_genes`` only for a single session)."""
        return cls(
            **_info_fields(record, base_url),
            live_genes=live_genes,
            backend=record.backend,
            ref=record.ref,
            endpoint=record.endpoint,
            status_changed_at=iso(record.status_changed_at) or "",
            last_event=record.last_event or None,
            last_event_at=iso(record.last_event_at) if record.last_event else None,
            out_of_memory_count=record.out_of_memory_count,
        )


class AdminSessionPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of ``GET /admin/sessions``; pass ``next_cursor`` back as ``cursor``."""

    sessions: list[AdminSession]
    next_cursor: str | None


class Capacity(msgspec.Struct, frozen=True, kw_only=True):
    """Limits, use and room left."""

    max_sessions: int
    used: int
    left: int
    max_sessions_per_user: int
    max_concurrent_starts: int
    starts_in_progress: int


class SnapshotStats(msgspec.Struct, frozen=True, kw_only=True):
    """Processor states kept in the snapshot store (Redis), as stored: zstd-compressed."""

    count: int
    """Snapshots kept (one per hibernated session, and per checkpointed one)."""
    bytes: int
    """Their stored size in all."""
    average_bytes: int
    """``bytes / count`` (0 without snapshots): what one hibernated session costs Redis."""


class Stats(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /admin/stats``."""

    sessions_by_status: dict[str, int]
    total: int
    capacity: Capacity
    backend: str
    manager_id: str
    reap_action: str
    snapshots: SnapshotStats
    warm_pool: PoolStats | None = None
    """The warm pool (``WARM_POOL_SIZE``); ``null`` without one."""
