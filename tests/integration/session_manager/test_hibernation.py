"""Hibernate and restore on real processors: the state survives, the client sees one reply."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

from session_manager.models import SessionStatus
from session_manager.processor_client import ProcessorState
from session_manager.processor_secrets import ProcessorSecrets
from session_manager.sessions import Sessions
from tests.support.manager import Manager, SettingsFactory, StartManager, auth, observed
from tests.support.pids import pid_running, processes_of


async def prepare(manager: Manager) -> dict[str, Any]:
    """A session that learned hello-world-test and now holds hello, world in its STM."""
    session = await manager.create(genes={"recall_threshold": 0.2})
    sid = session["session_id"]
    for symbol in ("hello", "world", "test"):
        await manager.client.post(
            f"/session/{sid}/observe", json={"strings": [symbol]}, headers=auth(session)
        )
    await manager.client.post(f"/session/{sid}/learn", headers=auth(session))
    for symbol in ("hello", "world"):
        await manager.client.post(
            f"/session/{sid}/observe", json={"strings": [symbol]}, headers=auth(session)
        )
    return session


async def pid_of(manager: Manager, session: dict[str, Any]) -> int:
    reply = await manager.client.get(
        f"/admin/sessions/{session['session_id']}", headers=manager.admin
    )
    return int(reply.json()["ref"])


async def test_hibernation_removes_the_processor_and_the_next_request_restores_everything(
    manager: Manager, manager_id: str
) -> None:
    session = await prepare(manager)
    sid = session["session_id"]
    pid = await pid_of(manager, session)
    sessions: Sessions = manager.app.state.sessions
    assert await sessions.hibernate(sid)
    assert not pid_running(pid)
    assert processes_of(manager_id) == {}
    info = await manager.client.get(f"/session/{sid}", headers=auth(session))
    assert info.json()["status"] == "hibernated"

    stm = await manager.client.get(f"/session/{sid}/stm", headers=auth(session))
    assert stm.status_code == 200
    assert stm.json()["stm"] == [["hello"], ["world"]]
    predictions = await manager.client.get(f"/session/{sid}/predictions", headers=auth(session))
    assert [p["future"] for p in predictions.json()["predictions"]] == [[["test"]]]
    gene = await manager.client.get(f"/session/{sid}/gene/recall_threshold", headers=auth(session))
    assert gene.json()["gene_value"] == 0.2
    assert (await pid_of(manager, session)) != pid
    assert list(processes_of(manager_id).values()) == [sid]
    metrics = (await manager.client.get("/metrics")).text
    assert "kato_hibernations_total 1.0" in metrics
    assert "kato_restores_total 1.0" in metrics


async def test_concurrent_requests_to_a_hibernated_session_start_one_processor(
    manager: Manager, manager_id: str
) -> None:
    session = await prepare(manager)
    sid = session["session_id"]
    sessions: Sessions = manager.app.state.sessions
    await sessions.hibernate(sid)
    replies = await asyncio.gather(
        *(manager.client.get(f"/session/{sid}/stm", headers=auth(session)) for _ in range(8))
    )
    assert [r.status_code for r in replies] == [200] * 8
    assert all(r.json()["stm"] == [["hello"], ["world"]] for r in replies)
    assert list(processes_of(manager_id).values()) == [sid]


async def test_a_websocket_to_a_hibernated_session_restores_it(manager: Manager) -> None:
    session = await prepare(manager)
    sid = session["session_id"]
    await manager.app.state.sessions.hibernate(sid)
    url = f"{manager.ws_url}/session/{sid}/ws?token={session['token']}"
    async with connect(url, proxy=None, open_timeout=30) as ws:
        await ws.send(json.dumps({"type": "get_stm", "payload": {}}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert reply["data"]["stm"] == [["hello"], ["world"]]


async def test_hibernation_loses_to_a_request_that_moved_the_deadline(manager: Manager) -> None:
    session = await manager.create(idle_timeout_s=60)
    sid = session["session_id"]
    store = manager.app.state.store
    before = await store.get(sid)
    looked_at = before.idle_deadline  # the reaper saw the session due at its deadline
    await asyncio.sleep(0.01)
    await manager.client.get(f"/session/{sid}/stm", headers=auth(session))  # then a request
    await manager.app.state.forwarder.activity.drain()
    assert not await manager.app.state.sessions.hibernate(sid, only_if_idle_due_at=looked_at)
    after = await store.get(sid)
    assert after.status == SessionStatus.READY
    assert after.idle_deadline > looked_at


async def test_deleting_a_hibernated_session_leaves_no_snapshot(manager: Manager) -> None:
    session = await prepare(manager)
    sid = session["session_id"]
    await manager.app.state.sessions.hibernate(sid)
    assert await manager.app.state.store.load_snapshot(sid) is not None
    assert (
        await manager.client.delete(f"/session/{sid}", headers=auth(session))
    ).status_code == 204
    assert await manager.app.state.store.load_snapshot(sid) is None


async def test_recover_replaces_a_killed_processor_from_its_snapshot(
    manager: Manager, manager_id: str
) -> None:
    session = await prepare(manager)
    sid = session["session_id"]
    sessions: Sessions = manager.app.state.sessions
    store = manager.app.state.store
    pid = await pid_of(manager, session)
    record = await store.get(sid)
    assert record is not None
    # Recovered here by hand, not by the crash watch (tested in test_crash_recovery).
    manager.app.state.backend.watch_exits(lambda handle: None)
    # A snapshot taken earlier (as the reaper would have) and then the processor dies.
    async with httpx.AsyncClient(trust_env=False) as client:
        secret = ProcessorSecrets(manager.app.state.settings.processor_secret_key)
        state = await client.get(f"{record.endpoint}/state", headers=secret.headers(sid))
        await store.save_snapshot(sid, state.content)
    os.killpg(pid, signal.SIGKILL)
    while pid_running(pid):
        await asyncio.sleep(0.02)
    assert record.handle is not None
    assert not await manager.app.state.backend.is_alive(record.handle)
    recovered = await sessions.recover(record)
    assert recovered is not None
    assert recovered.status == SessionStatus.READY
    stm = await manager.client.get(f"/session/{sid}/stm", headers=auth(session))
    assert stm.json()["stm"] == [["hello"], ["world"]]
    assert list(processes_of(manager_id).values()) == [sid]


async def test_a_replica_that_routed_a_session_follows_its_hibernation_elsewhere(
    start_manager: StartManager, make_settings: SettingsFactory, manager_id: str
) -> None:
    settings = make_settings()
    first, second = await start_manager(settings), await start_manager(settings)
    session = await prepare(first)
    sid = session["session_id"]
    for _ in range(3):  # first now routes this session from memory
        assert (
            await first.client.get(f"/session/{sid}/stm", headers=auth(session))
        ).status_code == 200
    assert await second.app.state.sessions.hibernate(sid)
    stm = await first.client.get(f"/session/{sid}/stm", headers=auth(session))
    assert stm.status_code == 200
    assert stm.json()["stm"] == [["hello"], ["world"]]
    assert list(processes_of(manager_id).values()) == [sid]


async def test_observations_racing_a_hibernation_are_all_kept(manager: Manager) -> None:
    session = await manager.create()
    sid = session["session_id"]
    sessions: Sessions = manager.app.state.sessions

    async def observe(i: int) -> int:
        reply = await manager.client.post(
            f"/session/{sid}/observe", json={"strings": [f"s{i}"]}, headers=auth(session)
        )
        return reply.status_code

    observing = [asyncio.create_task(observe(i)) for i in range(30)]
    await asyncio.sleep(0.01)
    hibernated = await sessions.hibernate(sid)
    statuses = await asyncio.gather(*observing)
    assert statuses == [200] * 30
    stm = await manager.client.get(f"/session/{sid}/stm", headers=auth(session))
    assert sorted(event[0] for event in stm.json()["stm"]) == sorted(f"s{i}" for i in range(30))
    assert hibernated  # the race happened against a real hibernation


async def test_a_failed_restore_keeps_the_session_hibernated_with_its_snapshot(
    start_manager: StartManager, make_settings: SettingsFactory, manager_id: str, tmp_path: Path
) -> None:
    # Each processor a new interpreter, so that swapping the interpreter breaks the restore.
    manager = await start_manager(make_settings(process_spawn="exec"))
    session = await prepare(manager)
    sid = session["session_id"]
    await manager.app.state.sessions.hibernate(sid)
    backend = manager.app.state.backend
    real_python = backend.python
    broken = tmp_path / "broken-python"
    broken.write_text("#!/bin/sh\necho 'no room at the inn' >&2\nexit 1\n")
    broken.chmod(0o755)
    backend.python = str(broken)
    failed = await manager.client.get(f"/session/{sid}/stm", headers=auth(session))
    assert failed.status_code == 502
    assert failed.json()["error"]["details"]["log_tail"] == ["no room at the inn"]
    record = await manager.app.state.store.get(sid)
    assert record.status == SessionStatus.HIBERNATED
    assert record.idle_deadline > manager.app.state.clock.now_ms() + 3600_000
    assert await manager.app.state.store.load_snapshot(sid) is not None
    assert processes_of(manager_id) == {}
    backend.python = real_python  # the next request restores it after all
    stm = await manager.client.get(f"/session/{sid}/stm", headers=auth(session))
    assert stm.json()["stm"] == [["hello"], ["world"]]


async def test_a_checkpoint_of_a_processor_that_names_no_seq_reads_it_from_the_snapshot(
    manager: Manager,
) -> None:
    """An image older than ``X-Kato-State-Seq``: the snapshot is opened (off the loop) instead."""
    session = await manager.create()
    await observed(manager, session, "a", "b")
    store = manager.app.state.store
    record = await store.get(session["session_id"])
    state = await manager.app.state.processors.get_state(
        record.endpoint, processor_id=record.processor_id, epoch=record.epoch
    )
    assert state.seq == 2
    assert await store.journal.length(session["session_id"]) == 2
    hibernation = manager.app.state.sessions._hibernation
    older = ProcessorState(state.snapshot, None)
    assert await hibernation._save_checkpoint(session["session_id"], older) == 2
    assert await store.journal.length(session["session_id"]) == 0  # both held by the snapshot
