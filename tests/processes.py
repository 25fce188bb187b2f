"""Real processor processes for tests and benchmarks: ``python -m processor_image`` on loopback.

``start_processor(processor_id, **env)`` is a context manager yielding a ``RunningProcessor``
(``url``, ``process``) once ``/health`` answers; the process is always terminated on exit.
``processor_spec(**env)`` is what a backend is given to start one for a session.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

from session_manager.backends.base import ProcessorSpec
from tests.support.net import free_port

__all__ = ("RunningProcessor", "processor_spec", "start_processor")


def processor_spec(session_id: str | None = None, **env: str) -> ProcessorSpec:
    """A backend's start request for a session (a new id unless given) on the memory store."""
    session_id = session_id or uuid.uuid4().hex
    return ProcessorSpec(
        session_id=session_id,
        processor_id=session_id,
        kb_id=session_id,
        env={"PROCESSOR_ID": session_id, "KB_ID": session_id, "STORAGE": "memory", **env},
    )


@dataclass
class RunningProcessor:
    url: str
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def start_processor(
    processor_id: str = "p1", *, port: int | None = None, **env: str
) -> Iterator[RunningProcessor]:
    port = port or free_port()
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
