"""A listening unix socket only its owner can reach, whose path appears once it accepts."""

from __future__ import annotations

import contextlib
import os
import socket

__all__ = ("listening_unix_socket",)


def listening_unix_socket(path: str, backlog: int) -> socket.socket:
    """Bind ``path`` (mode 0600, a stale file replaced) and listen.

    The socket is bound under a temporary name, restricted, then renamed: nobody can connect
    in between, and whoever waits for ``path`` finds a socket already accepting.
    """
    partial = path + ".partial"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(partial)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(partial)
        os.chmod(partial, 0o600)
        listener.listen(backlog)
        os.rename(partial, path)
    except BaseException:
        listener.close()
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
    return listener
