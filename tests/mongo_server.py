"""A real MongoDB-wire server for tests: ``MONGO_URL`` when set, else SecantusDB in memory.

Any test directory can use it::

    @pytest.fixture(scope="session")
    def mongo_url() -> Iterator[str]:
        with mongo_server() as url:
            yield url
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from tests.support.net import free_port

__all__ = ("mongo_server", "secantus_server")


def _secantusd() -> str:
    """The server script next to this interpreter (the venv), else the one on PATH."""
    beside = Path(sys.executable).parent / "secantusd-py"
    found = str(beside) if beside.exists() else shutil.which("secantusd-py")
    if found is None:
        raise RuntimeError("secantusd-py not found: pip install secantusdb (the dev extra)")
    return found


def _ping(url: str) -> bool:
    client: MongoClient[dict[str, object]] = MongoClient(url, serverSelectionTimeoutMS=200)
    try:
        client.admin.command("ping")
    except PyMongoError:
        return False
    else:
        return True
    finally:
        client.close()


@contextmanager
def secantus_server(start_timeout_s: float = 30.0) -> Iterator[str]:
    """Start ``secantusd-py`` on a free local port with in-memory storage; yield its URL.

    The server runs in its own process group from a temporary directory (so no config or data
    directory is picked up or left behind) and is terminated, then killed, on exit.
    """
    port = free_port()
    url = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    with tempfile.TemporaryDirectory(prefix="secantus-") as workdir:
        log_path = Path(workdir) / "server.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    _secantusd(),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--storage-path",
                    ":memory:",
                    "--standalone",
                ],
                cwd=workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + start_timeout_s
            while not _ping(url):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"SecantusDB did not start on port {port}: {log_path.read_text()[-2000:]}"
                    )
                time.sleep(0.1)
            yield url
        finally:
            _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, SIGKILL it when it does not exit in 10 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@contextmanager
def mongo_server() -> Iterator[str]:
    """``MONGO_URL`` when set (a server someone else runs), else a fresh SecantusDB."""
    url = os.environ.get("MONGO_URL")
    if url:
        yield url
        return
    with secantus_server() as started:
        yield started
