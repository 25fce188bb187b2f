"""Which session a claimed warm-pool processor serves (process backend, issue 15).

A process's environment cannot change once it runs, and a pooled processor was started with
its pool id as its ``KATO_SESSION_ID`` marker, before any session existed. When the pool hands
it to a session the backend records the binding here, one small file per pool id under
``DATA_DIR/processors/bindings``: it survives a manager restart (as the processes do), and pool
ids are random, so a recycled pid can never inherit one. ``list_owned``, ``stop`` and
``is_alive`` read a pooled processor's session through it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from session_manager.backends.base import is_pool_id

__all__ = ("Bindings",)


class Bindings:
    """Pool id -> session id, as files (written atomically, removed with the processor)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def bind(self, pool_id: str, session_id: str) -> None:
        """Record that the pooled processor ``pool_id`` now serves ``session_id``."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        target = self._path(pool_id)
        partial = target.with_suffix(".tmp")
        partial.write_text(session_id)
        os.replace(partial, target)

    def session_of(self, pool_id: str) -> str | None:
        """The session ``pool_id`` was bound to, if any."""
        try:
            return self._path(pool_id).read_text() or None
        except (OSError, ValueError):
            return None

    def forget(self, pool_id: str) -> None:
        """Drop the binding (the processor is gone)."""
        with contextlib.suppress(OSError, ValueError):
            self._path(pool_id).unlink(missing_ok=True)

    def _path(self, pool_id: str) -> Path:
        if not is_pool_id(pool_id) or not pool_id.replace("-", "").isalnum():
            raise ValueError(f"not a pool id: {pool_id!r}")
        return self.directory / pool_id
