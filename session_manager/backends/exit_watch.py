"""Noticing at once that a child process exited: one pidfd per child, read by the event loop.

The process backend owns its processors' pids. ``os.pidfd_open`` gives a descriptor that
becomes readable when the process exits (Linux 5.3+), so the loop learns of a crash (SIGKILL,
OOM) the moment it happens, instead of at the next refused request or reconciler pass, and the
session can be recovered before anyone asks for it. Where pidfds are not available watching
is a no-op: those two paths still recover the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable

__all__ = ("ExitWatcher",)


class ExitWatcher:
    """Calls ``on_exit(pid)`` on the loop when a watched process exits by itself.

    A process the caller is about to stop is ``forget``-ten first, so only exits nobody asked
    for are reported.
    """

    def __init__(self, on_exit: Callable[[int], None]) -> None:
        self._on_exit = on_exit
        self._watched: dict[int, tuple[int, asyncio.AbstractEventLoop]] = {}

    def watch(self, pid: int) -> bool:
        """Start watching ``pid`` (on the running loop); False when it cannot be watched."""
        if not hasattr(os, "pidfd_open") or pid in self._watched:
            return False
        try:
            fd = os.pidfd_open(pid)
        except OSError:  # gone already (the caller's own checks see that), or no pidfd support
            return False
        loop = asyncio.get_running_loop()
        self._watched[pid] = (fd, loop)
        loop.add_reader(fd, self._exited, pid)
        return True

    def forget(self, pid: int) -> None:
        """Stop watching ``pid``: its exit is expected (it is being stopped) or was seen."""
        watched = self._watched.pop(pid, None)
        if watched is None:
            return
        fd, loop = watched
        with contextlib.suppress(RuntimeError, ValueError):  # loop closed, fd already gone
            loop.remove_reader(fd)
        os.close(fd)

    def close(self) -> None:
        """Stop watching everything (the processors keep running)."""
        for pid in list(self._watched):
            self.forget(pid)

    def _exited(self, pid: int) -> None:
        self.forget(pid)
        self._on_exit(pid)
