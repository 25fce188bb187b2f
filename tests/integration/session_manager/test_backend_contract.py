"""The Backend contract (``backends/base.py``), run against every backend that can run here.

Parametrised by the ``backend`` fixture over ``FACTORIES``: ``process`` always; other backends
add a factory there (skipping when their engine is missing).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from session_manager.backends.base import Backend, ProcessorHandle
from session_manager.backends.process import MANAGER_MARKER, SESSION_MARKER, ProcessBackend
from session_manager.errors import StartFailed
from tests.processes import processor_spec
from tests.support.pids import pid_running, processes_of


def _process(manager_id: str, tmp_path: Path) -> Backend:
    return ProcessBackend(
        manager_id=manager_id,
        log_dir=tmp_path / "processors",
        start_timeout_s=30,
        stop_timeout_s=5,
    )


def _process_fork(manager_id: str, tmp_path: Path) -> Backend:
    """``PROCESS_SPAWN=fork``: processors forked from the fork server."""
    return ProcessBackend(
        manager_id=manager_id,
        log_dir=tmp_path / "processors",
        start_timeout_s=30,
        stop_timeout_s=5,
        spawn="fork",
    )


FACTORIES: dict[str, Callable[[str, Path], Backend]] = {
    "process": _process,
    "process-fork": _process_fork,
}
"""Backend name -> factory(manager_id, tmp_path); other backends add themselves here."""


@pytest.fixture(name="backend", params=sorted(FACTORIES))
async def fx_backend(
    request: pytest.FixtureRequest, manager_id: str, tmp_path: Path
) -> AsyncIterator[Backend]:
    backend = FACTORIES[request.param](manager_id, tmp_path)
    yield backend
    for handle in await backend.list_owned():
        await backend.stop(handle)
    await backend.close()


async def test_start_returns_a_healthy_processor_with_the_requested_env(backend: Backend) -> None:
    wanted = processor_spec(RECALL_THRESHOLD="0.4")
    handle = await backend.start(wanted)
    assert handle.session_id == wanted.session_id
    assert handle.backend == backend.name
    async with httpx.AsyncClient(trust_env=False) as client:
        health = await client.get(f"{handle.endpoint}/health")
        gene = await client.get(f"{handle.endpoint}/gene/recall_threshold")
    assert health.json()["processor_id"] == wanted.processor_id
    assert gene.json()["gene_value"] == 0.4
    assert await backend.is_alive(handle)
    await backend.stop(handle)


async def test_stop_removes_the_processor_and_is_idempotent(backend: Backend) -> None:
    handle = await backend.start(processor_spec())
    await backend.stop(handle)
    assert not await backend.is_alive(handle)
    await backend.stop(handle)  # already gone: no error
    async with httpx.AsyncClient(trust_env=False) as client:
        with pytest.raises(httpx.TransportError):
            await client.get(f"{handle.endpoint}/health")


async def test_list_owned_finds_running_processors_with_their_sessions(backend: Backend) -> None:
    first, second = await asyncio.gather(
        backend.start(processor_spec()), backend.start(processor_spec())
    )
    owned = {h.session_id: h for h in await backend.list_owned()}
    assert set(owned) == {first.session_id, second.session_id}
    assert owned[first.session_id].ref == first.ref
    assert owned[first.session_id].endpoint == first.endpoint
    await backend.stop(first)
    assert [h.session_id for h in await backend.list_owned()] == [second.session_id]
    await backend.stop(second)


async def test_a_processor_of_another_manager_is_neither_listed_nor_stopped(
    backend: Backend, tmp_path: Path
) -> None:
    other = ProcessBackend(
        manager_id=f"other-{uuid.uuid4().hex[:8]}",
        log_dir=tmp_path / "other",
        start_timeout_s=30,
        stop_timeout_s=5,
    )
    foreign = await other.start(processor_spec())
    try:
        assert await backend.list_owned() == []
        assert not await backend.is_alive(foreign)
        await backend.stop(foreign)
        assert await other.is_alive(foreign)
    finally:
        await other.stop(foreign)
        await other.close()


async def test_a_start_that_fails_raises_start_failed_and_leaves_nothing(
    backend: Backend, manager_id: str
) -> None:
    with pytest.raises(StartFailed) as caught:
        await backend.start(processor_spec(STORAGE="nonsense"))
    assert any("STORAGE" in line for line in caught.value.details["log_tail"])
    assert processes_of(manager_id) == {}


async def test_a_recycled_pid_is_never_signalled(manager_id: str, tmp_path: Path) -> None:
    backend = ProcessBackend(
        manager_id=manager_id, log_dir=tmp_path, start_timeout_s=5, stop_timeout_s=1
    )
    bystander = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True
    )
    try:
        handle = ProcessorHandle(
            backend="process", ref=str(bystander.pid), endpoint="http://127.0.0.1:1", session_id="x"
        )
        assert not await backend.is_alive(handle)
        await backend.stop(handle)
        assert pid_running(bystander.pid)
    finally:
        bystander.kill()
        bystander.wait()
        await backend.close()


async def test_processes_carry_the_markers_and_their_own_process_group(
    manager_id: str, tmp_path: Path
) -> None:
    backend = ProcessBackend(
        manager_id=manager_id, log_dir=tmp_path, start_timeout_s=30, stop_timeout_s=5
    )
    wanted = processor_spec()
    handle = await backend.start(wanted)
    try:
        pid = int(handle.ref)
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert f"{MANAGER_MARKER}={manager_id}".encode() in environ
        assert f"{SESSION_MARKER}={wanted.session_id}".encode() in environ
        assert not any(item.startswith(b"ADMIN_TOKEN=") for item in environ)
        assert os.getpgid(pid) == pid
        assert (tmp_path / f"{wanted.processor_id}.log").exists()
    finally:
        await backend.stop(handle)
        await backend.close()
    assert not (tmp_path / f"{wanted.processor_id}.log").exists()


async def test_a_cancelled_start_leaves_no_processor(backend: Backend, manager_id: str) -> None:
    # A fork starts in milliseconds: the cancel may come after the start finished. Then that
    # processor is stopped and the start tried again, until a cancel lands mid-start.
    for _ in range(10):
        task = asyncio.create_task(backend.start(processor_spec()))
        while not processes_of(manager_id) and not task.done():
            await asyncio.sleep(0.001)
        task.cancel()
        try:
            handle = await task
        except asyncio.CancelledError:
            break
        await backend.stop(handle)
    else:
        pytest.fail("every start finished before its cancel")
    assert processes_of(manager_id) == {}
