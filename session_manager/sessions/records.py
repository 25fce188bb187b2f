"""Reading a session's record for a request: the record, or the 404/410 its absence means."""

from __future__ import annotations

from session_manager.clock import iso
from session_manager.errors import KatoError, SessionExpired, SessionNotFound
from session_manager.models import SessionRecord, Tombstone
from session_manager.store import SessionStore

__all__ = ("gone", "live_record", "record_with_deadlines")


def gone(session_id: str, tombstone: Tombstone | None) -> KatoError:
    """404 for an id never seen (or long forgotten), 410 with the reason while a tombstone lives."""
    if tombstone is None:
        return SessionNotFound("no such session", session_id=session_id)
    return SessionExpired(
        f"the session ended ({tombstone.reason})",
        session_id=session_id,
        reason=tombstone.reason,
        ended_at=iso(tombstone.ended_at),
        **tombstone.details,
    )


async def live_record(store: SessionStore, session_id: str) -> SessionRecord:
    """The record (without deadlines, one round trip), or ``gone``'s error."""
    record, tombstone = await store.lookup(session_id)
    if record is not None:
        return record
    raise gone(session_id, tombstone)


async def record_with_deadlines(store: SessionStore, session_id: str) -> SessionRecord:
    """The record with its idle and hard deadlines, or ``gone``'s error."""
    record = await store.get(session_id)
    if record is None:
        raise gone(session_id, await store.tombstone(session_id))
    return record
