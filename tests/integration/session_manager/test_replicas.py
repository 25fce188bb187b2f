"""Replicated managers on one Redis: idempotent creates (``Idempotency-Key``) on any replica, and
one replica SIGKILLed under load: no session lost, none duplicated, reaping goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from session_manager.models import SessionRecord
from session_manager.sessions import NewSession
from session_manager.store import Capacity
from tests.support.manager import (
    ADMIN,
    CREATOR,
    Manager,
    ManagerProcessFactory,
    SettingsFactory,
    StartManager,
    auth,
)
from tests.support.pids import processes_of

BODY = {"user_id": "alice", "genes": {"recall_threshold": 0.2}}


def _key(name: str) -> dict[str, str]:
    return {**CREATOR, "Idempotency-Key": name}


async def _listed(manager: Manager) -> list[str]:
    page = await manager.client.get("/admin/sessions", params={"limit": 500}, headers=ADMIN)
    assert page.status_code == 200, page.text
    return [s["session_id"] for s in page.json()["sessions"]]


async def test_a_retried_create_on_another_replica_returns_the_same_session(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    settings = make_settings()
    first, second = await start_manager(settings), await start_manager(settings)
    one = await first.client.post("/session/create", json=BODY, headers=_key("order-1"))
    again = await second.client.post("/session/create", json=BODY, headers=_key("order-1"))
    assert one.status_code == again.status_code == 201, again.text
    assert one.json()["session_id"] == again.json()["session_id"]
    assert await _listed(second) == [one.json()["session_id"]]
    stm = f"/session/{one.json()['session_id']}/stm"
    # The retry's token is the valid one: the first answer may never have reached the client.
    assert (await first.client.get(stm, headers=auth(again.json()))).status_code == 200
    assert (await second.client.get(stm, headers=auth(one.json()))).status_code == 401
    # Another key is another session; the same key for another request is refused.
    other = await second.client.post("/session/create", json=BODY, headers=_key("order-2"))
    assert other.json()["session_id"] != one.json()["session_id"]
    reused = await first.client.post(
        "/session/create", json={"user_id": "bob"}, headers=_key("order-1")
    )
    assert reused.status_code == 409
    assert reused.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    # A session that ran and ended is not created again under its key.
    await second.client.delete(f"/session/{one.json()['session_id']}", headers=auth(again.json()))
    ended = await first.client.post("/session/create", json=BODY, headers=_key("order-1"))
    assert ended.status_code == 410, ended.text
    assert ended.json()["error"]["details"]["reason"] == "deleted"


async def test_concurrent_creates_with_one_key_make_one_session(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    settings = make_settings()
    replicas = [await start_manager(settings), await start_manager(settings)]
    replies = await asyncio.gather(
        *(
            replicas[i % 2].client.post("/session/create", json=BODY, headers=_key("burst"))
            for i in range(6)
        )
    )
    assert {r.status_code for r in replies} == {201}, [r.text for r in replies]
    assert len({r.json()["session_id"] for r in replies}) == 1
    assert len(await _listed(replicas[0])) == 1
    # Exactly one of the tokens handed out is valid: the last rotation's.
    stm = f"/session/{replies[0].json()['session_id']}/stm"
    valid = [
        (await replicas[0].client.get(stm, headers=auth(r.json()))).status_code == 200
        for r in replies
    ]
    assert valid.count(True) == 1


async def test_a_create_whose_replica_died_mid_start_is_made_anew_by_its_retry(
    manager: Manager,
) -> None:
    # What a replica killed mid-start leaves: the key's session ``starting``, with a start
    # slot that has run out and no processor recorded.
    lifecycle = manager.app.state.sessions._lifecycle
    session_id = lifecycle._session_id(NewSession(user_id="alice"), "died-mid-start")
    now = manager.app.state.clock.now_ms()
    abandoned = SessionRecord.starting(
        session_id, "alice", now, idle_timeout_s=900, max_age_s=3600, genes=BODY["genes"]
    )
    expired = Capacity(max_sessions=10, max_per_user=10, max_starts=10, start_timeout_ms=-1)
    await manager.app.state.store.reserve(abandoned, expired)
    began = time.monotonic()
    retried = await manager.client.post(
        "/session/create", json=BODY, headers=_key("died-mid-start")
    )
    assert retried.status_code == 201, retried.text
    assert retried.json()["session_id"] == session_id
    assert retried.json()["status"] == "ready"
    assert time.monotonic() - began < 10  # not a reconciler pass or a start timeout later
    stm = f"/session/{session_id}/stm"
    assert (await manager.client.get(stm, headers=auth(retried.json()))).status_code == 200


@pytest.mark.parametrize("key", [b"", b"x" * 256, b"tab\there", "é".encode()])
async def test_a_malformed_idempotency_key_is_refused(manager: Manager, key: bytes) -> None:
    reply = await manager.client.post(
        "/session/create", json=BODY, headers=[*CREATOR.items(), ("Idempotency-Key", key)]
    )
    assert reply.status_code == 422, reply.text
    assert reply.json()["error"]["code"] == "VALIDATION_ERROR"
    assert await _listed(manager) == []


class _Client:
    """What an application does with two replicas: send to one, on a failure retry the other.

    Observes are retried only when the request surely never reached a manager (connection
    refused): an observe is not idempotent, so one whose answer was lost stays unacknowledged.
    """

    def __init__(self, urls: list[str]) -> None:
        self.clients = [httpx.AsyncClient(base_url=u, timeout=60, trust_env=False) for u in urls]
        self.dead: set[int] = set()

    async def create(self, key: str, turn: int) -> dict[str, Any]:
        for attempt in range(6):
            index = (turn + attempt) % 2
            if index in self.dead:
                continue
            with contextlib.suppress(httpx.TransportError):
                reply = await self.clients[index].post(
                    "/session/create", json=BODY, headers=_key(key)
                )
                assert reply.status_code == 201, reply.text
                body: dict[str, Any] = reply.json()
                return body
            await asyncio.sleep(0.1)
        raise AssertionError(f"create {key} failed on both replicas")

    async def observe(self, session: dict[str, Any], word: str, turn: int) -> bool:
        """True when acknowledged (200)."""
        path = f"/session/{session['session_id']}/observe"
        for attempt in range(2):
            index = (turn + attempt) % 2
            if index in self.dead:
                continue
            try:
                reply = await self.clients[index].post(
                    path, json={"strings": [word]}, headers=auth(session)
                )
            except httpx.ConnectError:
                continue
            except httpx.TransportError:
                return False  # sent, answer lost: maybe applied, not acknowledged
            assert reply.status_code == 200, reply.text
            return True
        return False

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()


def _in_order(acknowledged: list[str], seen: list[str]) -> bool:
    """Every acknowledged word is in ``seen``, each writer's in its order (writers run
    concurrently, so only one writer's words have an order; unacknowledged ones may be there).
    """
    for writer in {word.split("-")[0] for word in acknowledged}:
        rest = iter(w for w in seen if w.startswith(f"{writer}-"))
        if not all(word in rest for word in acknowledged if word.startswith(f"{writer}-")):
            return False
    return True


async def test_killing_a_replica_under_load_loses_no_session(
    manager_process: ManagerProcessFactory,
    make_settings: SettingsFactory,
    redis_url: str,
    tmp_path: Any,
    manager_id: str,
) -> None:
    quick = {
        "leader_ttl_s": 2,
        "reap_interval_s": 0.5,
        "reconcile_interval_s": 1,
        "orphan_grace_s": 1,
        "start_timeout_s": 10,
    }
    leader = manager_process(make_settings(data_dir=tmp_path / "a", **quick))
    follower = manager_process(make_settings(data_dir=tmp_path / "b", **quick))
    a = await leader.start()  # killed by the test; the fixture reaps the process
    redis = aioredis.Redis.from_url(redis_url)
    try:
        # ``a`` started first and took the reaper lease at once: the kill takes the leader.
        assert await redis.get("kato:leader:reaper")
        async with follower.running() as b:
            await _load_and_kill(a, b, leader.kill, manager_id)
    finally:
        await a.aclose()
        await redis.aclose()


async def _load_and_kill(a: Manager, b: Manager, kill: Any, manager_id: str) -> None:
    client = _Client([a.base_url, b.base_url])
    sessions: dict[str, dict[str, Any]] = {}
    acked: dict[str, list[str]] = {}
    stop = asyncio.Event()

    async def creator() -> None:
        turn = 0
        while not stop.is_set() and turn < 12:
            key = f"create-{turn}"
            sessions[key] = await client.create(key, turn)
            acked[key] = []
            turn += 1

    async def writer(worker: int) -> None:
        turn = worker
        while not stop.is_set():
            for key in list(sessions):
                if len(acked[key]) >= 30:
                    continue
                word = f"w{worker}-{turn}"
                turn += 1
                if await client.observe(sessions[key], word, turn):
                    acked[key].append(word)
            await asyncio.sleep(0.01)

    try:
        tasks = [asyncio.create_task(creator())] + [
            asyncio.create_task(writer(w)) for w in range(3)
        ]
        deadline = time.monotonic() + 60
        while len(sessions) < 6 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        kill()
        client.dead.add(0)
        await asyncio.sleep(3)  # traffic goes on against the survivor
        stop.set()
        await asyncio.gather(*tasks)
        # Any replica served any session; now the survivor holds them all, once each.
        listed = sorted(await _listed(b))
        assert listed == sorted(s["session_id"] for s in sessions.values())
        assert len(listed) == len(sessions) >= 6
        for key, session in sessions.items():
            stm = await b.client.get(f"/session/{session['session_id']}/stm", headers=auth(session))
            assert stm.status_code == 200, stm.text
            seen = [event[0] for event in stm.json()["stm"]]
            missing = set(acked[key]) - set(seen)
            assert not missing, (key, missing, seen)
            assert _in_order(acked[key], seen), (key, acked[key], seen)
        # Reaping goes on: the survivor takes the lease and hibernates an idle session.
        idle = await b.create(idle_timeout_s=1, user_id="idle")
        deadline = time.monotonic() + 20
        status = ""
        while time.monotonic() < deadline:
            reply = await b.client.get(f"/admin/sessions/{idle['session_id']}", headers=ADMIN)
            status = reply.json()["status"]
            if status == "hibernated":
                break
            await asyncio.sleep(0.2)
        assert status == "hibernated"
        # A processor the killed replica was starting is an orphan: the survivor removes it.
        deadline = time.monotonic() + 20
        while len(processes_of(manager_id)) > len(sessions) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert len(processes_of(manager_id)) == len(sessions)
    finally:
        await client.aclose()
