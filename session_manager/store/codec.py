"""How values are written to Redis and read back: records, index members, cursors, script args.

A record is a hash of strings (genes and labels as JSON); deadlines live in sorted sets and
join the record when read. Listing indexes hold members ``{created_at:013d}:{id}`` that sort by
creation time; a cursor is such a member, base64-encoded so clients treat it as opaque.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import msgspec

from session_manager.models import DEFAULT_TENANT, SessionRecord, SessionStatus

__all__ = (
    "Deadline",
    "deadline_arg",
    "decode_cursor",
    "encode_cursor",
    "from_hash",
    "index_member",
    "labels_from_hash",
    "member_session_id",
    "text",
    "texts",
    "to_hash",
)

Deadline = int | Literal["remove"] | None
"""A deadline change: a time in ms sets it, ``"remove"`` unschedules it, ``None`` keeps it."""

_INT_FIELDS = (
    "created_at",
    "last_activity",
    "status_changed_at",
    "idle_timeout_s",
    "max_age_s",
    "last_event_at",
    "out_of_memory_count",
    "epoch",
)
_STR_FIELDS = (
    "session_id",
    "user_id",
    "kb_id",
    "processor_id",
    "status",
    "token_hash",
    "tenant",
    "backend",
    "ref",
    "endpoint",
    "node",
    "last_event",
)


def to_hash(record: SessionRecord) -> dict[str, str | int]:
    """The hash fields of ``record`` (deadlines are not fields: they live in sorted sets)."""
    fields: dict[str, str | int] = {name: getattr(record, name) for name in _STR_FIELDS}
    fields.update({name: getattr(record, name) for name in _INT_FIELDS})
    fields["genes"] = msgspec.json.encode(record.genes).decode()
    fields["labels"] = msgspec.json.encode(record.labels).decode()
    return fields


def from_hash(
    fields: Mapping[bytes, bytes], idle: float | None, hard: float | None
) -> SessionRecord:
    """The record from its hash and its two deadline scores."""
    values: dict[str, Any] = {}
    for name in _STR_FIELDS:
        values[name] = fields.get(name.encode(), b"").decode()
    for name in _INT_FIELDS:
        values[name] = int(fields.get(name.encode(), b"0"))
    values["genes"] = msgspec.json.decode(fields.get(b"genes", b"{}"))
    values["labels"] = labels_from_hash(fields.get(b"labels"))
    values["status"] = SessionStatus(values["status"])
    values["tenant"] = values["tenant"] or DEFAULT_TENANT
    values["idle_deadline"] = None if idle is None else int(idle)
    values["hard_deadline"] = None if hard is None else int(hard)
    return SessionRecord(**values)


def labels_from_hash(raw: bytes | str | None) -> dict[str, str]:
    """The labels field as written by ``to_hash`` (none when missing)."""
    return msgspec.json.decode(raw or b"{}", type=dict[str, str])


def text(value: Any) -> str:
    """A Redis reply as ``str`` (the client answers bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def texts(values: Iterable[Any]) -> list[str]:
    """Several Redis replies as ``str``."""
    return [text(v) for v in values]


def index_member(created_at: int, session_id: str) -> str:
    """The listing-index member of a session: sorts by creation time, then id."""
    return f"{created_at:013d}:{session_id}"


def member_session_id(member: bytes | str) -> str:
    """The session id inside an index member."""
    return text(member).split(":", 1)[1]


def encode_cursor(member: str) -> str:
    """An opaque cursor for the listing position just after ``member``."""
    return base64.urlsafe_b64encode(member.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str | None:
    """The index member a cursor points after, or ``None`` when it is not one of ours."""
    try:
        decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    created, sep, session_id = decoded.partition(":")
    if not sep or len(created) != 13 or not created.isdigit() or not session_id:
        return None
    return decoded


def deadline_arg(value: Deadline) -> str:
    """A deadline change as the scripts read it: ``''`` keep, ``'-'`` remove, else the ms."""
    if value is None:
        return ""
    if value == "remove":
        return "-"
    return str(value)
