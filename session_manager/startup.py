"""Pre-flight checks run before anything starts: a usable ``DATA_DIR`` and a free port.

They run before the embedded Redis or any processor exists, so a deployment that cannot work
stops with one line naming the problem and leaves nothing running (uvicorn would otherwise
start the app first and fail to bind afterwards, with the lifespan half up).
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from pathlib import Path

from session_manager.settings import Settings

__all__ = ("PROBE_BYTES", "StartupError", "bind_listener", "check_data_dir")

PROBE_BYTES = 1024 * 1024
"""Written (and synced) once to prove ``DATA_DIR`` takes data, not only file names."""


class StartupError(RuntimeError):
    """The manager cannot start here; the message names the setting and the cause."""


def check_data_dir(settings: Settings) -> None:
    """Raise ``StartupError`` unless ``DATA_DIR`` can be created and written (when it is used).

    It is used by the embedded Redis (``REDIS_URL`` unset) and by the process backend's
    processor logs.
    """
    if settings.redis_url is not None and settings.backend != "process":
        return
    directory = Path(settings.data_dir)
    probe = directory / f".write-probe-{uuid.uuid4().hex}"
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"\0" * PROBE_BYTES)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise StartupError(
            f"DATA_DIR={settings.data_dir} is not usable: {exc.strerror or exc}"
        ) from exc
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


def bind_listener(settings: Settings) -> socket.socket:
    """The API's listening socket, bound to ``LISTEN_HOST:LISTEN_PORT`` before anything runs."""
    host, port = settings.listen_host, settings.listen_port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartupError(
            f"cannot listen on LISTEN_HOST={host} LISTEN_PORT={port}: {exc.strerror or exc}"
        ) from exc
    return sock
