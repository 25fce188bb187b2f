"""Snapshots of any size (issue 12, item 3): large states hibernate, come back, and are counted.

Real processors (process backend) and Redis. The states are built with big observed strings,
a handful of requests each under ``MAX_PROXY_BODY_BYTES``.
"""

from __future__ import annotations

import os
from typing import Any

import msgspec

from session_manager.sessions import Sessions
from tests.support.manager import Manager, auth

MB = 1024 * 1024


async def observe_big_strings(
    manager: Manager, session: dict[str, Any], *, strings: int, size: int, per_request: int
) -> None:
    """``strings`` observations of one ``size``-byte hex string each (compresses about 2x)."""
    sid = session["session_id"]
    for first in range(0, strings, per_request):
        count = min(per_request, strings - first)
        body = {"observations": [{"strings": [os.urandom(size // 2).hex()]} for _ in range(count)]}
        reply = await manager.client.post(
            f"/session/{sid}/observe-sequence",
            content=msgspec.json.encode(body),
            headers={**auth(session), "content-type": "application/json"},
        )
        assert reply.status_code == 200, reply.text[:300]


async def plain_state(manager: Manager, session: dict[str, Any]) -> bytes:
    """The session's ``GET /state`` as plain JSON (through the proxy, no compression asked)."""
    reply = await manager.client.get(
        f"/session/{session['session_id']}/state",
        headers={**auth(session), "accept-encoding": "identity"},
    )
    assert reply.status_code == 200, reply.text[:300]
    assert "content-encoding" not in reply.headers
    return reply.content


async def stats(manager: Manager) -> dict[str, Any]:
    reply = await manager.client.get("/admin/stats", headers=manager.admin)
    assert reply.status_code == 200, reply.text
    snapshots: dict[str, Any] = reply.json()["snapshots"]
    return snapshots


async def test_a_30_mb_state_answers_200_after_hibernation(manager: Manager) -> None:
    """The issue's case: four 5 MB observes, hibernation, then every request was 502 (413)."""
    session = await manager.create()
    sid = session["session_id"]
    await observe_big_strings(manager, session, strings=4, size=5 * MB, per_request=1)
    sessions: Sessions = manager.app.state.sessions
    assert await sessions.hibernate(sid)
    for _ in range(2):
        reply = await manager.client.get(f"/session/{sid}/stm", headers=auth(session))
        assert reply.status_code == 200, reply.text[:300]
        assert len(reply.json()["stm"]) == 4


async def test_a_50_mb_state_hibernates_compressed_and_restores_identical(
    manager: Manager,
) -> None:
    session = await manager.create(genes={"recall_threshold": 0.1})
    sid = session["session_id"]
    headers = auth(session)
    learned = []
    for words in ("a b c", "a b d"):
        for word in words.split():
            await manager.client.post(
                f"/session/{sid}/observe", json={"strings": [word]}, headers=headers
            )
        reply = await manager.client.post(f"/session/{sid}/learn", headers=headers)
        learned.append(reply.json()["pattern_name"])
    await observe_big_strings(manager, session, strings=50, size=MB, per_request=10)
    for word in ("a", "b"):
        await manager.client.post(
            f"/session/{sid}/observe", json={"strings": [word]}, headers=headers
        )
    before = await plain_state(manager, session)
    assert len(before) > 50 * MB
    stm_before = (await manager.client.get(f"/session/{sid}/stm", headers=headers)).json()
    assert (await stats(manager))["count"] == 0

    sessions: Sessions = manager.app.state.sessions
    assert await sessions.hibernate(sid)
    kept = await stats(manager)
    assert kept["count"] == 1
    assert 0 < kept["bytes"] < len(before) * 0.7  # stored compressed
    assert kept["average_bytes"] == kept["bytes"]
    stored = await manager.app.state.store.load_snapshot(sid)
    assert stored is not None
    assert len(stored) == kept["bytes"]

    stm_after = await manager.client.get(f"/session/{sid}/stm", headers=headers)
    assert stm_after.status_code == 200, stm_after.text[:300]
    assert stm_after.json() == stm_before
    assert await plain_state(manager, session) == before  # STM, patterns, caches, genes
    for name in learned:
        pattern = await manager.client.get(f"/session/{sid}/pattern/{name}", headers=headers)
        assert pattern.status_code == 200, pattern.text
    # The snapshot stays as the session's checkpoint (crash recovery); ending it frees it.
    assert (await stats(manager))["count"] == 1
    assert (await manager.client.delete(f"/session/{sid}", headers=headers)).status_code == 204
    assert await stats(manager) == {"count": 0, "bytes": 0, "average_bytes": 0}


async def test_snapshot_totals_follow_saves_deletes_and_ends(manager: Manager) -> None:
    store = manager.app.state.store
    first = await manager.create()
    second = await manager.create()
    await store.save_snapshot(first["session_id"], b"x" * 100)
    await store.save_snapshot(second["session_id"], b"y" * 300)
    await store.save_snapshot(first["session_id"], b"z" * 50)  # a later checkpoint replaces
    assert await stats(manager) == {"count": 2, "bytes": 350, "average_bytes": 175}
    await store.delete_snapshot(first["session_id"])
    await store.delete_snapshot(first["session_id"])  # nothing left: no change
    assert await stats(manager) == {"count": 1, "bytes": 300, "average_bytes": 300}
    reply = await manager.client.delete(f"/session/{second['session_id']}", headers=auth(second))
    assert reply.status_code == 204
    assert await stats(manager) == {"count": 0, "bytes": 0, "average_bytes": 0}
