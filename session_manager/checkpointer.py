"""Checkpoints: running sessions' state saved as their snapshot, and their journal trimmed.

``checkpoint_once`` (the leader's scheduler, every ``CHECKPOINT_INTERVAL_S``) checkpoints every
``ready`` session whose journal has entries. ``soon`` (the proxy, when a journal reaches
``CHECKPOINT_MAX_ENTRIES``) checkpoints one session in the background on any replica; the
per-session checkpoint lock keeps two checkpoints of a session from crossing.
"""

from __future__ import annotations

import asyncio
import logging

from session_manager.errors import KatoError
from session_manager.models import SessionStatus
from session_manager.sessions import Sessions
from session_manager.store import SessionStore

__all__ = ("Checkpointer",)

log = logging.getLogger(__name__)

_BATCH = 500


class Checkpointer:
    """Takes checkpoints by timer and on demand; remembers the on-demand ones in flight."""

    def __init__(self, *, store: SessionStore, sessions: Sessions) -> None:
        self.store = store
        self.sessions = sessions
        self._pending: dict[str, asyncio.Task[None]] = {}

    async def checkpoint_once(self) -> list[str]:
        """Checkpoint every ready session with journal entries; the ids checkpointed."""
        done: list[str] = []
        batch: list[str] = []
        async for session_id in self.store.iter_status(SessionStatus.READY, _BATCH):
            batch.append(session_id)
            if len(batch) >= _BATCH:
                done += await self._checkpoint_journaled(batch)
                batch = []
        if batch:
            done += await self._checkpoint_journaled(batch)
        return done

    async def _checkpoint_journaled(self, session_ids: list[str]) -> list[str]:
        lengths = await self.store.journal.lengths(session_ids)
        done = []
        for session_id, length in zip(session_ids, lengths, strict=True):
            if length and await self.checkpoint(session_id):
                done.append(session_id)
        return done

    async def checkpoint(self, session_id: str) -> bool:
        """Checkpoint one session if it is ready; failures are logged (the next pass retries)."""
        try:
            record = await self.store.get(session_id)
            if record is None:
                return False
            seq = await self.sessions.checkpoint(record)
        except KatoError as exc:
            log.warning("checkpoint failed", extra={"session_id": session_id, "error": exc.message})
            return False
        if seq is not None:
            log.debug("session checkpointed", extra={"session_id": session_id, "seq": seq})
        return seq is not None

    def soon(self, session_id: str) -> None:
        """Checkpoint the session in the background, unless one is already on its way here."""
        if session_id in self._pending:
            return
        task = asyncio.create_task(self._soon(session_id))
        self._pending[session_id] = task

    async def _soon(self, session_id: str) -> None:
        try:
            await self.checkpoint(session_id)
        finally:
            self._pending.pop(session_id, None)

    async def aclose(self) -> None:
        """Let background checkpoints finish."""
        if self._pending:
            await asyncio.gather(*self._pending.values(), return_exceptions=True)
