"""A real session manager process for benchmarks (``python -m session_manager`` on loopback)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.support.net import free_port

__all__ = ("api_keys", "running_manager")


def api_keys(key: str) -> str:
    """An ``API_KEYS`` document with one key that may create sessions (tenant ``default``)."""
    document = {"keys": [{"tenant": "default", "scopes": ["sessions:create"], "key": key}]}
    return json.dumps(document)


@contextlib.contextmanager
def running_manager(workdir: Path, admin_token: str, **env: str) -> Iterator[str]:
    """Start the manager with ``env`` on top of bench defaults; yield its URL; stop it (SIGTERM)."""
    with manager_process(workdir, admin_token, **env) as (url, _):
        yield url


@contextlib.contextmanager
def manager_process(
    workdir: Path, admin_token: str, **env: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``running_manager``, yielding the process too (for benchmarks that read its memory)."""
    port = free_port()
    environment = {
        **os.environ,
        "LISTEN_HOST": "127.0.0.1",
        "LISTEN_PORT": str(port),
        "DATA_DIR": str(workdir / "data"),
        "ADMIN_TOKEN": admin_token,
        "IDLE_TIMEOUT_S": "3600",
        "REAP_INTERVAL_S": "3600",
        "LOG_LEVEL": "WARNING",
        **env,
    }
    log_path = workdir / "manager.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "session_manager"],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"manager exited: {log_path.read_text()[-2000:]}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{url}/health", timeout=1) as reply,  # noqa: S310
            ):
                if reply.status == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("manager did not answer /health within 60 s")
            time.sleep(0.1)
        yield url, process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
