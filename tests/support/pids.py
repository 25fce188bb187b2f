"""Which processes run: one pid, or every processor a manager id marked."""

from __future__ import annotations

from pathlib import Path

from session_manager.backends.process import MANAGER_MARKER, SESSION_MARKER

__all__ = ("pid_running", "processes_of")


def _state(entry: Path) -> str:
    """The one-letter state in ``/proc/<pid>/stat`` (``Z`` for a zombie); raises ``OSError``."""
    return (entry / "stat").read_text().rpartition(")")[2].split()[0]


def processes_of(manager_id: str) -> dict[int, str | None]:
    """Pid -> session id of every running (non-zombie) process marked with ``manager_id``."""
    found: dict[int, str | None] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "environ").read_bytes()
            state = _state(entry)
        except OSError:
            continue
        env = dict(item.partition(b"=")[::2] for item in raw.split(b"\0") if b"=" in item)
        if env.get(MANAGER_MARKER.encode()) == manager_id.encode() and state != "Z":
            session = env.get(SESSION_MARKER.encode())
            found[int(entry.name)] = session.decode() if session else None
    return found


def pid_running(pid: int) -> bool:
    """Whether ``pid`` runs (zombies count as gone)."""
    try:
        return _state(Path(f"/proc/{pid}")) != "Z"
    except OSError:
        return False
