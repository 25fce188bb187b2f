"""The processor service as a real process (``python -m processor_image``) on a loopback port.

* ``start_processor(**env)``: a context manager yielding a ``RunningProcessor`` (``url``,
  ``process``); the process is always terminated on exit.
* ``processor`` (module scope): one shared service; ``kato`` (per test) resets it the way the
  reference fixtures do (gene defaults, then clear-all) and gives an ``httpx.Client``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

DEFAULT_GENES = {
    "max_pattern_length": 0,
    "recall_threshold": 0.1,
    "persistence": 5,
    "smoothness": 3,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RunningProcessor:
    url: str
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def start_processor(processor_id: str = "p1", **env: str) -> Iterator[RunningProcessor]:
    port = free_port()
    environment = {
        **os.environ,
        "PROCESSOR_ID": processor_id,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_LEVEL": "warning",
        **env,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "processor_image"],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"processor exited: {process.stderr.read().decode() if process.stderr else ''}"
                )
            try:
                if httpx.get(f"{url}/health", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("processor did not become healthy")
            time.sleep(0.05)
        yield RunningProcessor(url, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()


@pytest.fixture(name="processor", scope="module")
def fx_processor() -> Iterator[RunningProcessor]:
    with start_processor() as running:
        yield running


@pytest.fixture(name="kato")
def fx_kato(processor: RunningProcessor) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=processor.url, timeout=10) as client:
        assert client.post("/genes/update", json={"genes": DEFAULT_GENES}).status_code == 200
        assert client.post("/clear-all").json()["message"] == "all-cleared"
        yield client
