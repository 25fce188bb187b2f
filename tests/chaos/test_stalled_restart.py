"""Chaos: a manager frozen (SIGSTOP) in the middle of restoring a session, on two real replicas.

Replica A takes a request for a hibernated session and claims its restore; it is frozen right
then, holding the session ``starting``. Its start slot runs out, and replica B's reconciler
gives the restart up. Before, that ended the session as ``start_failed``, and with it the
checkpoint and journal holding its acknowledged writes. Now the session goes back to
``hibernated``; A, thawed, finds its start given up (a newer epoch), stops the processor it
brought up and answers its client "retry"; the next request restores every acknowledged write.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from tests.support.manager import (
    Manager,
    ManagerProcessFactory,
    SettingsFactory,
    auth,
    observed,
    status_of,
)
from tests.support.pids import processes_of
from tests.support.timing import wait_for

SYMBOLS = [f"s{i}" for i in range(12)]


async def _hibernate(manager: Manager, session_id: str) -> None:
    reply = await manager.client.post(
        f"/admin/sessions/{session_id}/hibernate", headers=manager.admin
    )
    assert reply.status_code == 200, reply.text


async def _freeze_mid_restore(
    a_url: str, a_pid: int, session: dict[str, Any], redis: aioredis.Redis
) -> asyncio.Task[httpx.Response] | None:
    """Send A a request that restores the session; SIGSTOP A while the restore is claimed.

    Returns the request's task (it completes after A is thawed), or ``None`` when the restore
    finished before A could be frozen (the caller hibernates again and retries).
    """
    key = f"kato:session:{session['session_id']}"
    client = httpx.AsyncClient(base_url=a_url, timeout=120, trust_env=False)

    async def call() -> httpx.Response:
        try:
            return await client.get(f"/session/{session['session_id']}/stm", headers=auth(session))
        finally:
            await client.aclose()

    task = asyncio.create_task(call())
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not task.done():
        if await redis.hget(key, "status") == b"starting":
            os.kill(a_pid, signal.SIGSTOP)
            if await redis.hget(key, "status") == b"starting":
                return task
            os.kill(a_pid, signal.SIGCONT)  # it finished just before the freeze
            break
    await task
    return None


async def test_a_restore_frozen_past_its_slot_keeps_every_acknowledged_write(
    manager_process: ManagerProcessFactory,
    make_settings: SettingsFactory,
    redis_url: str,
    tmp_path: Path,
    manager_id: str,
) -> None:
    quick = {
        "leader_ttl_s": 2,
        "reconcile_interval_s": 0.5,
        "orphan_grace_s": 1,
        "start_timeout_s": 2,
        "stop_timeout_s": 1,
    }
    replica_a = manager_process(make_settings(data_dir=tmp_path / "a", **quick))
    replica_b = manager_process(make_settings(data_dir=tmp_path / "b", **quick))
    redis = aioredis.Redis.from_url(redis_url)
    try:
        async with replica_a.running() as a, replica_b.running() as b:
            assert replica_a.process is not None
            a_pid = replica_a.process.pid
            session = await b.create()
            session_id, headers = session["session_id"], auth(session)
            await observed(b, session, *SYMBOLS)  # acknowledged: each answered 200
            await _hibernate(b, session_id)
            pending = None
            for _ in range(10):
                pending = await _freeze_mid_restore(a.base_url, a_pid, session, redis)
                if pending is not None:
                    break
                await _hibernate(b, session_id)
            assert pending is not None, "never caught A's restore in flight"
            try:
                # A is frozen holding the session ``starting``; its slot (3 s) runs out and B,
                # which takes the reconciler lease over from A if A held it, gives the restart up.
                async def given_up() -> bool:
                    return await redis.hget(f"kato:session:{session_id}", "status") == b"hibernated"

                assert await wait_for(given_up, timeout_s=20), await status_of(b, session)
            finally:
                os.kill(a_pid, signal.SIGCONT)
            answered = await pending
            # A's client is told to retry (its restart was given up) or, had A finished first,
            # served: never told the session is gone.
            assert answered.status_code in (200, 503), answered.text

            async def served_everything() -> bool:
                reply = await b.client.get(f"/session/{session_id}/stm", headers=headers)
                if reply.status_code == 503:
                    return False
                assert reply.status_code == 200, reply.text
                return bool(reply.json()["stm"] == [[s] for s in SYMBOLS])

            assert await wait_for(served_everything, timeout_s=20)
            reply = await a.client.get(f"/session/{session_id}/stm", headers=headers)
            assert reply.json()["stm"] == [[s] for s in SYMBOLS]

            async def one_processor() -> bool:  # A stopped the one it brought up for nothing
                return list(processes_of(manager_id).values()).count(session_id) == 1

            assert await wait_for(one_processor, timeout_s=10)
    finally:
        await redis.aclose()
