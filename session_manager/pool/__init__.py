"""The warm pool (issue 15): processors started ahead, claimed by sessions in one call.

* ``warm``: ``WarmPool`` (members, claims, background refill, adoption, drain, stats);
* ``backend``: ``PooledBackend``, the backend wrapper through which every start claims first;
* ``claims``: the HTTP claim and probe; ``poolable``: what a backend must offer (``bind``);
* ``metrics``: its Prometheus metrics.

``start_warm_pool`` is what the app's lifespan calls.
"""

from __future__ import annotations

import contextlib
import logging

from session_manager.backends.base import Backend
from session_manager.metrics import Metrics
from session_manager.pool.backend import PooledBackend
from session_manager.pool.metrics import PoolMetrics
from session_manager.pool.poolable import PoolableBackend
from session_manager.pool.warm import PoolStats, WarmPool
from session_manager.settings import Settings
from session_manager.store import SessionStore

__all__ = ("PoolStats", "PooledBackend", "WarmPool", "start_warm_pool")

log = logging.getLogger(__name__)


async def start_warm_pool(
    settings: Settings,
    backend: Backend,
    store: SessionStore,
    metrics: Metrics,
    stack: contextlib.AsyncExitStack,
) -> WarmPool | None:
    """The running pool for this backend, drained when ``stack`` closes; ``None`` without one.

    None when ``WARM_POOL_SIZE`` is 0 or the backend cannot hand processors to sessions.
    """
    size = settings.effective_warm_pool_size
    if size <= 0:
        return None
    if not isinstance(backend, PoolableBackend):
        log.warning("no warm pool: this backend cannot bind processors", extra={"size": size})
        return None

    async def starts_in_use() -> int:
        return (await store.counts())["starts"]

    pool = WarmPool(
        settings=settings,
        backend=backend,
        metrics=PoolMetrics(metrics.registry),
        starts_in_use=starts_in_use,
    )
    stack.push_async_callback(pool.drain)
    await pool.start()
    return pool
