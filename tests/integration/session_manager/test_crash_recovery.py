"""Crash recovery: a processor killed with SIGKILL comes back from checkpoint + journal."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from typing import Any

import httpx
from websockets.asyncio.client import connect

from tests.support.manager import ADMIN, Manager, SettingsFactory, StartManager, auth, status_of

IDENTITY = ("processor_id", "uptime")


async def kill(manager: Manager, session: dict[str, Any]) -> int:
    pid = int((await status_of(manager, session))["ref"])
    os.killpg(pid, signal.SIGKILL)
    return pid


async def state(manager: Manager, session: dict[str, Any]) -> dict[str, Any]:
    reply = await manager.client.get(
        f"/session/{session['session_id']}/state", headers=auth(session)
    )
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


async def drive(manager: Manager, session: dict[str, Any], words: str) -> list[int]:
    """Observe each word (no unique ids: the processor assigns them), learn; the seqs got."""
    base, headers = f"/session/{session['session_id']}", auth(session)
    numbers = []
    for word in words.split():
        reply = await manager.client.post(
            f"{base}/observe", json={"strings": [word], "emotives": {"joy": 0.5}}, headers=headers
        )
        assert reply.status_code == 200, reply.text
        numbers.append(int(reply.headers.get("x-kato-seq", 0)))
    reply = await manager.client.post(f"{base}/learn", headers=headers)
    assert reply.status_code == 200, reply.text
    return numbers


async def test_a_killed_processor_answers_the_next_request_with_nothing_lost(
    manager: Manager,
) -> None:
    session = await manager.create()
    await drive(manager, session, "a b c")
    await drive(manager, session, "a b")
    before = await state(manager, session)
    old_pid = await kill(manager, session)
    stm = await manager.client.get(f"/session/{session['session_id']}/stm", headers=auth(session))
    assert stm.status_code == 200, stm.text  # not 502, not 410
    after = await state(manager, session)
    assert after == before
    assert int((await status_of(manager, session))["ref"]) != old_pid


async def test_recovery_replays_the_journal_on_top_of_the_checkpoint(manager: Manager) -> None:
    session = await manager.create()
    sid = session["session_id"]
    sessions = manager.app.state.sessions
    store = manager.app.state.store
    await drive(manager, session, "x y")
    record = await store.get(sid)
    checkpoint = await sessions.checkpoint(record)
    assert checkpoint == 3
    assert await store.journal.length(sid) == 0  # trimmed: the checkpoint holds them
    await drive(manager, session, "a b c")
    genes = await manager.client.post(
        f"/session/{sid}/genes/update",
        json={"genes": {"recall_threshold": 0.3}},
        headers=auth(session),
    )
    assert genes.status_code == 200
    assert await store.journal.length(sid) == 5
    before = await state(manager, session)
    await kill(manager, session)
    after = await state(manager, session)  # the GET itself finds the processor gone
    assert after == before
    assert after["seq"] == 8
    reply = await manager.client.post(f"/session/{sid}/learn", headers=auth(session))
    assert reply.headers["x-kato-seq"] == "9"  # the numbering goes on


async def test_an_observe_sent_to_a_killed_processor_is_applied_once(manager: Manager) -> None:
    session = await manager.create()
    sid = session["session_id"]
    await drive(manager, session, "a")
    await kill(manager, session)
    reply = await manager.client.post(
        f"/session/{sid}/observe", json={"strings": ["b"]}, headers=auth(session)
    )
    assert reply.status_code == 200, reply.text
    stm = await manager.client.get(f"/session/{sid}/stm", headers=auth(session))
    assert stm.json()["stm"] == [["b"]]  # learn cleared "a"; "b" once
    assert (await state(manager, session))["time"] == 2


async def test_the_reconciler_recovers_a_session_nobody_is_using(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    manager = await start_manager(make_settings(reconcile_interval_s=0.3))
    session = await manager.create()
    await drive(manager, session, "a b")
    before = await state(manager, session)
    old_pid = await kill(manager, session)
    for _ in range(100):
        record = await status_of(manager, session)
        if record["status"] == "ready" and int(record["ref"] or 0) not in (0, old_pid):
            break
        await asyncio.sleep(0.1)
    assert record["status"] == "ready"
    assert int(record["ref"]) != old_pid
    assert await state(manager, session) == before


async def test_a_hibernated_session_keeps_its_snapshot_as_checkpoint(manager: Manager) -> None:
    session = await manager.create()
    sid = session["session_id"]
    store = manager.app.state.store
    await drive(manager, session, "a b")
    assert await manager.app.state.sessions.hibernate(sid)
    restored = await state(manager, session)
    assert await store.has_snapshot(sid)  # kept: it is the checkpoint now
    await drive(manager, session, "c")
    assert await store.journal.length(sid) == 2
    await kill(manager, session)
    after = await state(manager, session)
    assert after["seq"] == restored["seq"] + 2
    assert after["stm"] == []
    assert after["time"] == 3


async def test_an_ended_session_leaves_no_journal(manager: Manager) -> None:
    session = await manager.create()
    sid = session["session_id"]
    await drive(manager, session, "a")
    store = manager.app.state.store
    assert await store.journal.length(sid) == 2
    deleted = await manager.client.delete(f"/session/{sid}", headers=auth(session))
    assert deleted.status_code in (200, 204)
    assert await store.journal.length(sid) == 0


async def test_unique_ids_the_processor_assigned_are_replayed(manager: Manager) -> None:
    session = await manager.create()
    sid = session["session_id"]
    sequence = await manager.client.post(
        f"/session/{sid}/observe-sequence",
        json={"observations": [{"strings": ["a"]}, {"strings": ["b"], "unique_id": "mine"}]},
        headers=auth(session),
    )
    assigned = sequence.json()["results"][0]["unique_id"]
    before = await state(manager, session)
    await kill(manager, session)
    async with httpx.AsyncClient(base_url=manager.base_url, trust_env=False) as client:
        predictions = await client.get(
            f"/session/{sid}/predictions", params={"unique_id": assigned}, headers=auth(session)
        )
    assert predictions.status_code == 200
    assert await state(manager, session) == before


async def test_a_checkpoint_pass_trims_the_journal_of_what_it_saved(manager: Manager) -> None:
    session = await manager.create()
    sid = session["session_id"]
    store = manager.app.state.store
    await drive(manager, session, "a b")
    assert await manager.app.state.checkpointer.checkpoint_once() == [sid]
    assert await store.journal.length(sid) == 0
    assert await manager.app.state.checkpointer.checkpoint_once() == []  # nothing new
    await drive(manager, session, "c")
    before = await state(manager, session)
    await kill(manager, session)
    assert await state(manager, session) == before


async def test_a_long_journal_is_checkpointed_at_once(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    manager = await start_manager(make_settings(checkpoint_max_entries=3))
    session = await manager.create()
    sid = session["session_id"]
    store = manager.app.state.store
    await drive(manager, session, "a b c")  # 4 entries: over the limit
    for _ in range(100):
        if await store.has_snapshot(sid) and await store.journal.length(sid) < 4:
            break
        await asyncio.sleep(0.05)
    assert await store.has_snapshot(sid)
    assert await store.journal.length(sid) < 4


async def test_websocket_writes_are_journaled_and_clients_see_unchanged_frames(
    manager: Manager,
) -> None:
    session = await manager.create()
    sid = session["session_id"]
    url = f"{manager.ws_url}/session/{sid}/ws"
    frames = [
        {"type": "observe", "payload": {"strings": ["a"], "vectors": [], "emotives": {}}},
        {"type": "get_stm"},
        {"type": "observe", "payload": {"strings": ["b"], "vectors": [], "emotives": {"j": 1}}},
        {"type": "learn"},
        {"type": "update_genes", "payload": {"genes": {"recall_threshold": 0.4}}},
        {"type": "observe", "payload": {"strings": ["a"], "vectors": [], "emotives": {}}},
    ]
    async with connect(url, additional_headers=auth(session), proxy=None) as ws:
        replies = []
        for frame in frames:
            await ws.send(json.dumps(frame))
            replies.append(json.loads(await ws.recv()))
    assert all("seq" not in reply["data"] for reply in replies)
    assert [r["type"] for r in replies][:2] == ["observation_result", "stm"]
    assert await manager.app.state.store.journal.length(sid) == 5
    before = await state(manager, session)
    await kill(manager, session)
    assert await state(manager, session) == before
    assert before["seq"] == 5
    async with connect(url, additional_headers=auth(session), proxy=None) as ws:
        await ws.send(json.dumps({"type": "get_stm"}))
        assert json.loads(await ws.recv())["data"]["stm"] == [["a"]]


BAD_VECTORS = [[1, 2], [1, 2, 3]]
"""Vectors the engine cannot add up: an observation it refuses (422 INVALID_OBSERVATION)."""


async def test_refused_observations_leave_the_state_a_recovery_rebuilds(manager: Manager) -> None:
    """An ``observe-sequence`` with a bad item is refused whole (nothing applied, nothing to
    journal); a single refused observe, HTTP or WebSocket, still counts time (spec §2.2) and is
    journaled with its error. Killed and recovered, the processor equals the one before."""
    session = await manager.create()
    sid = session["session_id"]
    base, headers = f"/session/{sid}", auth(session)
    await drive(manager, session, "a")
    await manager.client.post(f"{base}/observe", json={"strings": ["b"]}, headers=headers)
    start = await state(manager, session)
    sequence = await manager.client.post(
        f"{base}/observe-sequence",
        json={"observations": [{"strings": ["c"]}, {"vectors": BAD_VECTORS}, {"strings": ["d"]}]},
        headers=headers,
    )
    assert sequence.status_code == 422, sequence.text
    assert sequence.json()["error"]["details"]["index"] == 1
    assert await state(manager, session) == start  # nothing of it applied
    single = await manager.client.post(
        f"{base}/observe", json={"strings": ["e"], "vectors": BAD_VECTORS}, headers=headers
    )
    assert single.status_code == 422, single.text
    frame = {"type": "observe", "payload": {"strings": [], "vectors": BAD_VECTORS, "emotives": {}}}
    async with connect(f"{manager.ws_url}{base}/ws", additional_headers=headers, proxy=None) as ws:
        await ws.send(json.dumps(frame))
        reply = json.loads(await ws.recv())
    assert reply["type"] == "error"
    assert "seq" not in reply["data"]
    before = await state(manager, session)
    assert before["time"] == start["time"] + 2  # both refused observations counted time
    await kill(manager, session)
    assert await state(manager, session) == before


async def test_a_crashed_processor_is_replaced_before_any_request_asks(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    """The process backend sees its processor die (SIGKILL) and the recovery starts at once:
    with no request and no reconciler pass, the session is ready on a new processor, so the
    next request does not wait for a processor start."""
    manager = await start_manager(make_settings(reconcile_interval_s=3600))
    session = await manager.create()
    await drive(manager, session, "a b")
    before = await state(manager, session)
    old_pid = await kill(manager, session)
    for _ in range(200):
        record = await status_of(manager, session)
        if record["status"] == "ready" and int(record["ref"] or 0) not in (0, old_pid):
            break
        await asyncio.sleep(0.05)
    assert record["status"] == "ready"
    assert int(record["ref"]) != old_pid
    assert await state(manager, session) == before
    metrics = (await manager.client.get("/metrics", headers=ADMIN)).text
    assert 'kato_recoveries_total{by="exit"} 1.0' in metrics


async def test_a_recovery_that_replayed_is_checkpointed_so_a_second_crash_replays_nothing(
    manager: Manager,
) -> None:
    session = await manager.create()
    sid = session["session_id"]
    store = manager.app.state.store
    await drive(manager, session, "a b c")
    assert await store.journal.length(sid) == 4
    before = await state(manager, session)
    await kill(manager, session)
    assert await state(manager, session) == before
    for _ in range(100):
        if await store.journal.length(sid) == 0:
            break
        await asyncio.sleep(0.05)
    assert await store.journal.length(sid) == 0
    assert await store.has_snapshot(sid)
    await kill(manager, session)
    assert await state(manager, session) == before
