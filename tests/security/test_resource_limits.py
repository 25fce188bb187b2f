"""Finding 2 (memory): the process backend caps each processor's memory, and says when it hit it.

Before, a processor could grow without bound (one WebSocket flood took one to 640 MB in 20 s).
Now ``PROCESSOR_MEMORY_LIMIT`` is its ``RLIMIT_DATA``; a processor over it exits with
``EXIT_OUT_OF_MEMORY`` and the manager tells: the request in flight is ``507
PROCESSOR_OUT_OF_MEMORY`` (not resent), the session records ``processor_out_of_memory``, the
metric counts it, and the session is recovered from checkpoint and journal (or, when it cannot
be, ends with the event in its tombstone). Real processors driven past a small limit by one
~15 MiB observe (~235 MiB of heap in a processor, measured).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec

from processor_image.contract import OUT_OF_MEMORY_LINE
from session_manager.backends.base import OUT_OF_MEMORY, ProcessorSpec
from session_manager.backends.process import ProcessBackend
from session_manager.processor_secrets import SECRET_HEADER, ProcessorSecrets
from tests.support.manager import ADMIN, Manager, SettingsFactory, StartManager, auth

LIMIT = "128m"
"""Room for an idle processor (~70 MiB of ``RLIMIT_DATA``), not for ``_HUGE``'s observe."""
_HUGE = msgspec.json.encode({"strings": [f"s{n:07d}" for n in range(1_300_000)]})
"""One observe of 1.3 million symbols: ~15 MiB of JSON, under ``MAX_PROXY_BODY_BYTES``."""


async def _huge_observe(manager: Manager, session: dict[str, Any]) -> httpx.Response:
    return await manager.client.post(
        f"/session/{session['session_id']}/observe",
        content=_HUGE,
        headers={**auth(session), "content-type": "application/json"},
    )


async def _huge_observe_direct(endpoint: str, headers: dict[str, str]) -> None:
    """``_HUGE`` straight to a processor, past the manager; it exits mid-request."""
    async with httpx.AsyncClient(base_url=endpoint, trust_env=False, timeout=30) as direct:
        with contextlib.suppress(httpx.TransportError):
            await direct.post(
                "/observe", content=_HUGE, headers={**headers, "content-type": "application/json"}
            )


async def _learned(manager: Manager, session: dict[str, Any], *symbols: str) -> str:
    """Observe ``symbols`` one by one and learn them; the pattern's name."""
    sid = session["session_id"]
    for symbol in symbols:
        reply = await manager.client.post(
            f"/session/{sid}/observe", json={"strings": [symbol]}, headers=auth(session)
        )
        assert reply.status_code == 200, reply.text
    reply = await manager.client.post(f"/session/{sid}/learn", headers=auth(session))
    assert reply.status_code == 200, reply.text
    return str(reply.json()["pattern_name"])


async def _detail(manager: Manager, session: dict[str, Any]) -> dict[str, Any]:
    reply = await manager.client.get(f"/admin/sessions/{session['session_id']}", headers=ADMIN)
    assert reply.status_code == 200, reply.text
    detail: dict[str, Any] = reply.json()
    return detail


def _data_limit(pid: int) -> int:
    """The ``Max data size`` soft limit of ``pid`` in bytes (from ``/proc/<pid>/limits``)."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max data size"):
            return int(line.split()[3])
    raise AssertionError("no data size limit line")


async def test_a_processor_runs_under_the_memory_limit(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    manager = await start_manager(make_settings(processor_memory_limit=LIMIT))
    session = await manager.create()
    pid = int((await _detail(manager, session))["ref"])
    assert _data_limit(pid) == 128 * 1024 * 1024
    default = await start_manager(make_settings())
    other = await default.create()
    assert _data_limit(int((await _detail(default, other))["ref"])) == 1024 * 1024 * 1024


async def test_a_processor_past_its_memory_limit_is_a_clear_error_and_the_session_recovers(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    manager = await start_manager(make_settings(processor_memory_limit=LIMIT))
    session = await manager.create()
    sid = session["session_id"]
    pattern = await _learned(manager, session, "kept-a", "kept-b")
    before = await _detail(manager, session)
    assert before["last_event"] is None
    assert before["out_of_memory_count"] == 0

    reply = await _huge_observe(manager, session)

    assert reply.status_code == 507, reply.text
    error = reply.json()["error"]
    assert error["code"] == "PROCESSOR_OUT_OF_MEMORY"
    assert error["details"]["limit"] == LIMIT
    assert error["details"]["recovered"] is True
    # Recovered by this request or by the crash watch that saw the exit first (then maybe
    # still starting): either way the session comes back without anyone asking again.
    deadline = time.monotonic() + 30
    after = await _detail(manager, session)
    while after["status"] != "ready":
        assert time.monotonic() < deadline, after
        await asyncio.sleep(0.1)
        after = await _detail(manager, session)
    assert after["ref"] != before["ref"]
    assert after["last_event"] == "processor_out_of_memory"
    assert after["last_event_at"] is not None
    assert after["out_of_memory_count"] == 1
    metrics = (await manager.client.get("/metrics")).text
    assert "kato_processor_out_of_memory_total 1.0" in metrics
    # The state as of the last acknowledged request came back (checkpoint plus journal).
    kept = await manager.client.get(f"/session/{sid}/pattern/{pattern}", headers=auth(session))
    assert kept.status_code == 200, kept.text
    stm = await manager.client.get(f"/session/{sid}/stm", headers=auth(session))
    assert stm.status_code == 200
    assert stm.json()["stm"] == []


async def test_without_a_checkpoint_or_journal_the_session_ends_with_the_event(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    manager = await start_manager(
        make_settings(processor_memory_limit=LIMIT, journal="off", reconcile_interval_s=0.3)
    )
    session = await manager.create()
    reply = await _huge_observe(manager, session)
    assert reply.status_code == 507, reply.text
    assert reply.json()["error"]["details"]["recovered"] is False
    ended = await _ended(manager, session)
    assert ended["error"]["details"]["reason"] == "processor_lost"
    assert ended["error"]["details"]["event"] == "processor_out_of_memory"


async def _ended(manager: Manager, session: dict[str, Any]) -> dict[str, Any]:
    """The 410 body once the reconciler ended the session (bounded wait)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        reply = await manager.client.get(
            f"/session/{session['session_id']}/stm", headers=auth(session)
        )
        if reply.status_code == 410:
            body: dict[str, Any] = reply.json()
            return body
        await asyncio.sleep(0.2)
    raise AssertionError("the session did not end")


async def test_the_reconciler_records_an_out_of_memory_exit_nobody_was_waiting_for(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    """A processor driven past its limit behind the proxy's back is still told, and recovered."""
    manager = await start_manager(
        make_settings(processor_memory_limit=LIMIT, reconcile_interval_s=0.3)
    )
    session = await manager.create()
    pattern = await _learned(manager, session, "kept-a", "kept-b")
    record = await manager.app.state.store.get(session["session_id"])
    secret = ProcessorSecrets(manager.app.state.settings.processor_secret_key).for_processor(
        record.processor_id
    )
    await _huge_observe_direct(record.endpoint, {SECRET_HEADER: secret})
    deadline = time.monotonic() + 30
    detail = await _detail(manager, session)
    while detail["status"] != "ready" or detail["ref"] == record.ref:
        assert time.monotonic() < deadline, detail
        await asyncio.sleep(0.2)
        detail = await _detail(manager, session)
    assert detail["last_event"] == "processor_out_of_memory"
    kept = await manager.client.get(
        f"/session/{session['session_id']}/pattern/{pattern}", headers=auth(session)
    )
    assert kept.status_code == 200, kept.text


async def test_the_cause_is_known_to_the_parent_and_to_a_manager_that_adopted_the_processor(
    tmp_path: Path, manager_id: str
) -> None:
    """The parent reads the exit status; a restarted manager (not the parent) reads the log."""
    limit = 128 * 1024 * 1024
    parent = ProcessBackend(
        manager_id=manager_id,
        log_dir=tmp_path,
        start_timeout_s=30,
        stop_timeout_s=5,
        python=sys.executable,
        memory_limit_bytes=limit,
    )
    adopter = ProcessBackend(
        manager_id=manager_id, log_dir=tmp_path, start_timeout_s=30, stop_timeout_s=5
    )
    spec = ProcessorSpec(
        session_id="s-oom",
        processor_id="p-oom",
        kb_id="p-oom",
        env={"PROCESSOR_ID": "p-oom", "MAX_BODY_BYTES": str(16 * 1024 * 1024)},
    )
    handle = await parent.start(spec)
    try:
        assert await parent.exit_cause(handle, "p-oom") is None  # still running
        await _huge_observe_direct(handle.endpoint, {})
        deadline = time.monotonic() + 10
        while await parent.is_alive(handle) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert await adopter.exit_cause(handle, "p-oom") == OUT_OF_MEMORY  # from the log
        log = tmp_path / "p-oom.log"
        assert log.read_text().splitlines()[-1] == OUT_OF_MEMORY_LINE
        log.unlink()
        assert await adopter.exit_cause(handle, "p-oom") is None
        assert await parent.exit_cause(handle, "p-oom") == OUT_OF_MEMORY  # from the status
    finally:
        await parent.stop(handle)
        await parent.close()
        await adopter.close()
