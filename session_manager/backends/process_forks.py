"""The process backend's fork server client (``PROCESS_SPAWN=fork``, issue 15).

``ForkServer`` starts ``python -m processor_image.forkserver`` once (lazily, from the event
loop's thread: the server exits with the thread that started it) and asks it for one fork per
processor. ``ForkedChild`` is what the backend keeps for such a processor instead of a
``Popen``: the server, not the manager, is its parent (and reaps it), so ``poll`` reads
``/proc`` and no exit status is known.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from session_manager.pids import zombie

__all__ = ("ForkServer", "ForkedChild")

_READY_TIMEOUT_S = 60.0
ENV_PAD = "KATO_ENV_PAD"
PAD_BYTES = 16384
"""Room in the server's environment block, which every fork inherits and overwrites with its
own environment (a processor's is ~1-2 KiB: markers, secret, genes)."""


class ForkedChild:
    """A processor forked by the server: ``pid`` and ``poll`` like a ``Popen``."""

    returncode: int | None = None
    """Never known: the fork server reaps its children."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def poll(self) -> int | None:
        """``None`` while it runs; ``-1`` once it is gone (or a zombie)."""
        if not Path(f"/proc/{self.pid}").exists() or zombie(self.pid):
            return -1
        return None


class ForkServer:
    """One fork server per backend; ``spawn`` is blocking (call it off the loop)."""

    def __init__(self, *, python: str, env: Mapping[str, str]) -> None:
        self.python = python
        self._directory: Path | None = None
        """The server's private directory (made when it starts, removed by ``close``)."""
        self._env = {**env, ENV_PAD: "x" * PAD_BYTES, "PYTHONUNBUFFERED": "1"}
        self._server: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def ensure_started(self) -> None:
        """Start the server unless it runs; call from the event loop's thread (see above)."""
        with self._lock:
            if self._server is not None and self._server.poll() is None:
                return
            if self._directory is None:
                self._directory = Path(tempfile.mkdtemp(prefix="kato-forks-"))
            self.socket_path.unlink(missing_ok=True)  # a dead server's: not ready yet
            self._server = subprocess.Popen(  # noqa: S603 - our interpreter, fixed argv
                [self.python, "-m", "processor_image.forkserver", str(self.socket_path)],
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                close_fds=True,
            )

    @property
    def socket_path(self) -> Path:
        """Where the server listens, once started."""
        if self._directory is None:
            raise RuntimeError("the fork server was not started")
        return self._directory / "socket"

    def _wait_ready(self) -> None:
        server = self._server
        if server is None or server.stdout is None:
            raise RuntimeError("the fork server was not started")
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while not self.socket_path.exists():
            if server.poll() is not None:
                raise RuntimeError(f"the fork server exited with {server.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("the fork server did not start")
            time.sleep(0.01)

    def spawn(self, env: Mapping[str, str], log_path: Path) -> ForkedChild:
        """Fork a processor with ``env``, its output appended to ``log_path``."""
        self._wait_ready()
        request = json.dumps({"env": dict(env), "log": str(log_path)}).encode() + b"\n"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(_READY_TIMEOUT_S)
            connection.connect(str(self.socket_path))
            connection.sendall(request)
            reply = json.loads(connection.makefile("rb").readline() or b"{}")
        if "pid" not in reply:
            raise RuntimeError(f"the fork server did not fork: {reply}")
        return ForkedChild(int(reply["pid"]))

    def close(self) -> None:
        """Stop the server (its children keep running) and remove its directory."""
        with self._lock:
            server, self._server = self._server, None
            directory, self._directory = self._directory, None
        try:
            if server is not None:
                _stop(server)
        finally:
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)


def _stop(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    try:
        server.wait(5)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(5)
    if server.stdout is not None:
        server.stdout.close()
