"""Unix sockets the ``process`` backend's processors listen on too, named by their port.

A processor on this host is reached faster over a unix socket than over loopback TCP (a
round trip here: about 18 µs against 30-48 µs). The sockets live in a directory only the manager's
user can enter, so nobody else can connect to them or stand in for a processor (an abstract
socket name could be taken first by anybody). Each processor keeps its TCP port for everything
else (health checks, state transfer); the proxy's requests and WebSockets use the socket when
it is there, and the port when not.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import stat
import tempfile
from pathlib import Path

__all__ = ("ProcessorSockets",)

log = logging.getLogger(__name__)

_MAX_PATH = 107
"""``sun_path`` holds 108 bytes with the terminating NUL."""
_LONGEST_NAME = "/65535.sock.partial"
"""The longest file a processor makes in the directory (``processor_image.unix_socket``)."""


class ProcessorSockets:
    """The directory of this manager's processor sockets, and where the one for a port is."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> ProcessorSockets | None:
        """``DATA_DIR/processors/sockets``, or a private one in the temporary directory.

        The second when the first is too long for a socket's path; it is named after
        ``data_dir``, so a restarted manager finds its processors' sockets again. ``None`` if
        the directory cannot be made ours.
        """
        directory = data_dir.absolute() / "processors" / "sockets"
        if not _fits(directory):
            digest = hashlib.sha256(str(data_dir.absolute()).encode()).hexdigest()[:16]
            directory = Path(tempfile.gettempdir()) / f"kato-{os.getuid()}-{digest}"
        if _fits(directory) and _private_directory(directory):
            return cls(directory)
        log.info("processors served on TCP only: no private directory for their sockets")
        return None

    def path(self, port: int) -> str:
        """Where the processor on ``port`` listens (``UNIX_SOCKET``)."""
        return str(self.directory / f"{port}.sock")

    def for_key(self, key: tuple[str, str, int]) -> str | None:
        """The socket of a loopback ``http`` endpoint's processor, if it has one."""
        scheme, host, port = key
        if scheme != "http" or host != "127.0.0.1":
            return None
        path = self.path(port)
        return path if os.path.exists(path) else None

    def remove(self, port: int) -> None:
        """Remove a stopped processor's socket (one that exited cleanly removed it already)."""
        Path(self.path(port)).unlink(missing_ok=True)

    def close(self) -> None:
        """Remove the directory if no processor listens in it any more."""
        with contextlib.suppress(OSError):  # not empty: processors outlive their manager
            self.directory.rmdir()


def _fits(directory: Path) -> bool:
    return len(os.fsencode(str(directory) + _LONGEST_NAME)) <= _MAX_PATH


def _private_directory(directory: Path) -> bool:
    """Make ``directory`` (mode 0700), or accept it if it is ours and nobody else's.

    Never through a symbolic link: ``lstat`` sees the link itself.
    """
    try:
        directory.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(directory)
    except OSError as exc:
        log.warning("socket directory unusable", extra={"path": str(directory), "error": str(exc)})
        return False
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == os.getuid()
        and stat.S_IMODE(info.st_mode) & 0o077 == 0
    )
