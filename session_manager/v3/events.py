"""v3's session events (§6): creations and deletions pushed to ``/ws/events`` listeners.

As in v3, events are this replica's own (a socket sees the creates and deletes this manager
process handled), there is no event for expiry, and ``ping`` is answered ``pong``. Under
``KATO_V3_AUTH=key`` the socket needs a key like every v3 route, and sees only its tenant's
sessions (v3 has no tenants: there, everyone sees everything).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from session_manager.v3.ids import iso_offset

__all__ = ("EventHub",)

_QUEUE_MAX = 256
"""Events a slow listener may fall behind by; past it the oldest are dropped."""


class EventHub:
    """Fans session events out to the open ``/ws/events`` sockets of this replica."""

    def __init__(self) -> None:
        self._listeners: dict[asyncio.Queue[dict[str, Any]], str | None] = {}

    def listen(self, tenant: str | None) -> asyncio.Queue[dict[str, Any]]:
        """A queue receiving ``tenant``'s events (all of them for ``None``)."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(_QUEUE_MAX)
        self._listeners[queue] = tenant
        return queue

    def leave(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        """Stop queueing for a socket that closed."""
        self._listeners.pop(queue, None)

    def publish(self, tenant: str, event_type: str, data: dict[str, Any]) -> None:
        """Queue one event (v3's shape) for every listener allowed to see ``tenant``'s."""
        event = {"event_type": event_type, "timestamp": iso_offset(time.time()), "data": data}
        for queue, only in self._listeners.items():
            if only is not None and only != tenant:
                continue
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(event)
