"""Private knowledge bases: a session's own MongoDB database is dropped when the session ends.

A session created without ``kb_id`` gets a knowledge base named after its (random) session id;
once the session has ended nothing can reach it again, so keeping it would only let MongoDB
fill up with unreachable databases. Shared knowledge bases (an explicit ``kb_id``) are never
touched. Hibernation keeps everything (the session has not ended).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from processor_image.contract import database_name
from session_manager.models import SessionRecord

__all__ = ("PrivateKnowledge",)

log = logging.getLogger(__name__)


class PrivateKnowledge:
    """Drops ended sessions' private MongoDB databases (best effort, off the event loop)."""

    def __init__(self, mongo_url: str) -> None:
        self._mongo_url = mongo_url
        self._client: Any = None

    @staticmethod
    def is_private(record: SessionRecord) -> bool:
        """Whether the session's knowledge base is its own (created without ``kb_id``)."""
        return record.kb_id == record.session_id

    async def drop(self, record: SessionRecord) -> None:
        """Drop the session's private database; failures are logged, never raised."""
        if not self.is_private(record):
            return
        try:
            await asyncio.to_thread(self._drop, database_name(record.kb_id))
        except Exception:
            log.warning(
                "private knowledge base not dropped",
                extra={"session_id": record.session_id},
                exc_info=True,
            )

    def _drop(self, name: str) -> None:
        if self._client is None:
            from pymongo import MongoClient

            self._client = MongoClient(self._mongo_url, serverSelectionTimeoutMS=3000)
        self._client.drop_database(name)

    def close(self) -> None:
        """Close the MongoDB client, if one was opened."""
        if self._client is not None:
            self._client.close()
            self._client = None
