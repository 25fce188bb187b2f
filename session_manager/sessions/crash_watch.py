"""Recover a session the moment its processor dies, not when someone next asks for it.

A backend that sees its processors exit (the process backend: ``watch_exits``, a pidfd per
processor) reports one that exited unasked; ``CrashWatch`` then runs ``Hibernation.recover_lost``
for it in the background. A request arriving meanwhile waits for that recovery (``Router``)
instead of finding the processor gone. Backends without it rely on the proxy and the reconciler.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable

from session_manager.backends.base import Backend
from session_manager.errors import KatoError
from session_manager.models import ProcessorHandle

__all__ = ("CrashWatch",)

log = logging.getLogger(__name__)

RecoverLost = Callable[..., Awaitable[bool]]
"""``Hibernation.recover_lost(session_id, endpoint, by=...)``."""


class CrashWatch:
    """Turns a backend's processor-exit reports into recoveries (``kato_recoveries{by=exit}``)."""

    def __init__(self, backend: Backend, recover_lost: RecoverLost, wait_s: float) -> None:
        self._recover_lost = recover_lost
        self._wait_s = wait_s
        self._recoveries: set[asyncio.Task[None]] = set()
        watch_exits = getattr(backend, "watch_exits", None)
        if watch_exits is not None:
            watch_exits(self._exited)

    def _exited(self, handle: ProcessorHandle) -> None:
        if handle.session_id is None:
            return
        task = asyncio.create_task(  # its own log context, not the request's that started it
            self._recover(handle.session_id, handle.endpoint), context=contextvars.Context()
        )
        self._recoveries.add(task)
        task.add_done_callback(self._recoveries.discard)

    async def _recover(self, session_id: str, endpoint: str) -> None:
        try:
            await self._recover_lost(session_id, endpoint, by="exit")
        except KatoError as exc:  # the next request or the reconciler tries again
            log.warning(
                "recovery after a processor exit failed",
                extra={"session_id": session_id, "error": exc.message},
            )
        except Exception:
            log.exception(
                "recovery after a processor exit crashed", extra={"session_id": session_id}
            )

    async def aclose(self) -> None:
        """Let recoveries under way finish (bounded by the start timeout)."""
        if self._recoveries:
            await asyncio.wait(list(self._recoveries), timeout=self._wait_s)
