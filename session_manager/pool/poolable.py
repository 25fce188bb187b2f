"""What a backend needs to keep a warm pool: the ``Backend`` protocol plus ``bind``."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from session_manager.backends.base import Backend, ProcessorHandle, SessionBindings

__all__ = ("KeepsBindings", "PoolableBackend")


@runtime_checkable
class PoolableBackend(Backend, Protocol):
    """A backend that can hand a started processor to a session.

    ``bind(handle, session_id)`` is given a pool member (``handle.session_id`` is its pool id)
    and records, wherever the backend keeps its labels, that it now serves ``session_id``; it
    returns the handle as that session knows it, which ``stop`` and ``is_alive`` accept and
    which ``list_owned`` reports with ``session_id`` filled in. Until then ``list_owned`` shows
    the member with its pool id. (``process`` keeps bindings in files; a container's labels
    are fixed once it runs, so ``docker`` and ``swarm`` keep them in Redis: ``KeepsBindings``.)
    """

    async def bind(self, handle: ProcessorHandle, session_id: str) -> ProcessorHandle:
        """Record that the pool member ``handle`` serves ``session_id`` from now on."""
        ...


@runtime_checkable
class KeepsBindings(Protocol):
    """A backend that keeps its pool members' sessions where the app says (Redis)."""

    def keep_bindings(self, bindings: SessionBindings) -> None:
        """Keep bindings in ``bindings`` from now on."""
        ...
