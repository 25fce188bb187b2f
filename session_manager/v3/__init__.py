"""The KATO v3 session API (issue 16): v3's routes, bodies and errors over private processors.

``KATO_V3_API=on`` mounts it at ``KATO_V3_PREFIX`` (default ``/v3``): a v3 client pointed at
``http://<manager>/v3`` works unchanged. Modules:

* ``routes``: the session routes; ``system``: the non-session routes a v3 client calls
* ``facade``: ``V3Sessions``, v3 sessions on top of ``Sessions`` (create, TTL, processor calls)
* ``config``: v3 configuration keys, their validation, and the classic genes they set
* ``schemas``, ``errors``, ``ids``: v3's bodies, error shapes, id and timestamp formats
* ``trace``: the ``X-Trace-ID`` every v3 response carries
* ``events``: the session creations and deletions ``/ws/events`` (in ``system``) pushes
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from litestar import Router
from litestar.datastructures import State

from session_manager.settings import Settings
from session_manager.v3.errors import v3_error_response
from session_manager.v3.facade import V3Sessions
from session_manager.v3.routes import SESSION_HANDLERS
from session_manager.v3.system import CLASHING_HANDLERS, SYSTEM_HANDLERS
from session_manager.v3.trace import TraceId

__all__ = ("V3Sessions", "owns_path", "start_v3", "v3_router")

log = logging.getLogger(__name__)


def v3_router(settings: Settings) -> Router | None:
    """The v3 routes at ``KATO_V3_PREFIX`` with v3's error shapes; ``None`` when switched off."""
    if settings.kato_v3_api != "on":
        return None
    handlers: list[Any] = [*SESSION_HANDLERS, *SYSTEM_HANDLERS]
    if settings.kato_v3_mount:
        handlers.extend(CLASHING_HANDLERS)
    return Router(
        path=settings.kato_v3_mount or "/",
        route_handlers=handlers,
        exception_handlers={Exception: v3_error_response},
        middleware=[TraceId],
        tags=["kato v3"],
    )


def owns_path(settings: Settings | None, path: str) -> bool:
    """Whether an unrouted request (404/405) is the v3 API's, so it gets v3's error shape."""
    if settings is None or settings.kato_v3_api != "on":
        return False
    prefix = settings.kato_v3_mount
    if prefix:
        return path == prefix or path.startswith(prefix + "/")
    return path == "/sessions" or path.startswith("/sessions/")


async def start_v3(state: State, stack: contextlib.AsyncExitStack) -> None:
    """Put ``V3Sessions`` on ``state.v3`` and run its sweep every ``REAP_INTERVAL_S``."""
    settings: Settings = state.settings
    if settings.kato_v3_api != "on":
        return
    state.v3 = V3Sessions(state)
    stack.push_async_callback(state.v3.aclose)
    task = asyncio.create_task(_sweeping(state.v3, settings.reap_interval_s))

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    stack.push_async_callback(stop)


async def _sweeping(v3: V3Sessions, interval_s: float) -> None:
    """End v3 sessions past their deadline, forever (any replica may: ends are CAS)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await v3.sweep()
        except Exception:
            log.warning("v3 sweep failed", exc_info=True)
