"""``PooledBackend``: a backend whose starts are claims from the warm pool when it can.

Every start of a session's processor (create, restore after hibernation, crash recovery) goes
through ``Backend.start``, so wrapping the backend is the one place the pool plugs in: the
session code does not know whether its processor was claimed or started cold.
"""

from __future__ import annotations

from collections.abc import Callable

from session_manager.backends.base import ProcessorHandle, ProcessorSpec
from session_manager.pool.poolable import PoolableBackend
from session_manager.pool.warm import WarmPool

__all__ = ("PooledBackend",)


class PooledBackend:
    """``start`` claims a pooled processor, else starts cold; the rest is the inner backend's.

    ``list_owned`` leaves out the pool's own members (waiting or starting): they serve no
    session, and the reconciler would otherwise remove them as orphans. Unassigned processors
    this pool does not know (left by a manager killed meanwhile) are orphans as usual.
    """

    def __init__(self, inner: PoolableBackend, pool: WarmPool) -> None:
        self.inner = inner
        self.pool = pool
        self.name = inner.name

    async def start(self, spec: ProcessorSpec) -> ProcessorHandle:
        """A claimed pool member when one is there, else a cold start."""
        claimed = await self.pool.claim(spec)
        return claimed if claimed is not None else await self.inner.start(spec)

    async def stop(self, handle: ProcessorHandle) -> None:
        """The inner backend's stop (a claimed member is stopped like any processor)."""
        await self.inner.stop(handle)

    async def is_alive(self, handle: ProcessorHandle) -> bool:
        """The inner backend's answer."""
        return await self.inner.is_alive(handle)

    def watch_exits(self, on_exit: Callable[[ProcessorHandle], None]) -> None:
        """The inner backend's exit reports, when it has them (``sessions.crash_watch``)."""
        watch = getattr(self.inner, "watch_exits", None)
        if watch is not None:
            watch(on_exit)

    async def exit_cause(self, handle: ProcessorHandle, processor_id: str) -> str | None:
        """The inner backend's answer."""
        return await self.inner.exit_cause(handle, processor_id)

    async def list_owned(self) -> list[ProcessorHandle]:
        """The inner backend's processors but the pool's waiting members."""
        return [h for h in await self.inner.list_owned() if not self.pool.holds(h)]

    async def ping(self) -> bool:
        """The inner backend's answer."""
        return await self.inner.ping()

    async def close(self) -> None:
        """The inner backend's close (the pool is drained before, by the lifespan)."""
        await self.inner.close()
