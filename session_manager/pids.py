"""Whether a process runs: the one check the process backend and the embedded Redis share."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

__all__ = ("pid_running", "zombie")


class _Polled(Protocol):
    def poll(self) -> int | None: ...


def pid_running(pid: int, child: _Polled | None = None) -> bool:
    """Whether ``pid`` runs; a zombie counts as gone, and our own child is asked directly."""
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not zombie(pid)


def zombie(pid: int) -> bool:
    """Whether ``pid`` has exited but was not reaped yet (its parent is not us)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] == "Z"
