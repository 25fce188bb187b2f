"""v3 time (TTL, auto-extend, exists, extend, count), credentials, and v3 sessions being real.

Time moves on an injected clock: nothing sleeps.
"""

from __future__ import annotations

import os
import signal

import httpx
import msgspec

from session_manager.sessions.tokens import hash_token
from tests.support.manager import ADMIN, SettingsFactory, StartManager
from tests.support.timing import ManualClock

OTHER_KEY = "other-tenant-key-0123456789abcdef"
KEY = "v3-tenant-key-0123456789abcdefgh"
KEYS = msgspec.json.encode(
    {
        "keys": [
            {"tenant": "default", "scopes": ["sessions:create"], "sha256": hash_token(KEY)},
            {"tenant": "other", "scopes": ["sessions:create"], "sha256": hash_token(OTHER_KEY)},
        ]
    }
).decode()


async def test_ttl_slides_on_every_route_but_exists(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    clock = ManualClock()
    manager = await start_manager(make_settings(kato_v3_api="on", kato_v3_auth="none"), clock=clock)
    v3 = httpx.AsyncClient(base_url=manager.base_url + "/v3", timeout=30)
    async with v3:
        short = (await v3.post("/sessions", json={"node_id": "n", "ttl_seconds": 60})).json()
        long = (await v3.post("/sessions", json={"node_id": "n", "ttl_seconds": 600})).json()
        sid = short["session_id"]
        assert (await v3.get("/sessions/count")).json() == {"active_session_count": 2}

        clock.advance(50)
        assert (await v3.get(f"/sessions/{sid}/stm")).status_code == 200  # moves it to +60
        clock.advance(50)
        assert (await v3.get(f"/sessions/{sid}")).status_code == 200  # 100 s after creation
        clock.advance(50)
        # exists reads without moving anything: 50 s after the last move, still alive...
        assert (await v3.get(f"/sessions/{sid}/exists")).json()["exists"] is True
        clock.advance(20)
        # ...and 70 s after it, expired (told once), then unknown.
        assert (await v3.get(f"/sessions/{sid}/exists")).json() == {
            "exists": False,
            "expired": True,
            "session_id": sid,
        }
        assert (await v3.get(f"/sessions/{sid}/exists")).json()["expired"] is False
        assert (await v3.get(f"/sessions/{sid}")).json() == {
            "detail": f"Session {sid} not found or expired"
        }
        assert (await v3.get("/sessions/count")).json() == {"active_session_count": 1}
        # The expired session was ended like any other: its processor is gone.
        ended = await manager.client.get(f"/admin/sessions/{sid}", headers=ADMIN)
        assert ended.status_code == 410

        # extend sets the deadline to now + N, past the session's TTL.
        lid = long["session_id"]
        await v3.post(f"/sessions/{lid}/extend", params={"ttl_seconds": 5000})
        clock.advance(4000)
        assert (await v3.get(f"/sessions/{lid}/exists")).json()["exists"] is True
        clock.advance(1001)
        assert (await v3.get(f"/sessions/{lid}/stm")).status_code == 404


async def test_an_operator_can_require_an_api_key(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    # CREATE_AUTH=key (the default) and KATO_V3_AUTH unset: v3 routes need a key.
    manager = await start_manager(make_settings(kato_v3_api="on", api_keys=KEYS))
    async with httpx.AsyncClient(base_url=manager.base_url + "/v3", timeout=30) as v3:
        missing = await v3.post("/sessions", json={"node_id": "n"})
        assert missing.status_code == 401
        assert "X-API-Key" in missing.json()["detail"]
        wrong = await v3.post("/sessions", json={"node_id": "n"}, headers={"X-API-Key": "nope"})
        assert wrong.status_code == 401
        created = await v3.post("/sessions", json={"node_id": "n"}, headers={"X-API-Key": KEY})
        assert created.status_code == 200
        sid = created.json()["session_id"]
        bearer = {"Authorization": f"Bearer {KEY}"}
        assert (await v3.get(f"/sessions/{sid}/stm", headers=bearer)).status_code == 200
        # Another tenant's key finds no such session.
        other = {"X-API-Key": OTHER_KEY}
        assert (await v3.get(f"/sessions/{sid}/stm", headers=other)).status_code == 404
        assert (await v3.get(f"/sessions/{sid}", headers=other)).status_code == 404
        assert (await v3.get(f"/sessions/{sid}/stm")).status_code == 401
        # Monitoring stays open, as in v3.
        assert (await v3.get("/health")).status_code == 200


async def test_a_v3_session_hibernates_and_comes_back_with_its_state_and_node(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    manager = await start_manager(make_settings(kato_v3_api="on", kato_v3_auth="none"))
    async with httpx.AsyncClient(base_url=manager.base_url + "/v3", timeout=30) as v3:
        teacher = (await v3.post("/sessions", json={"node_id": "n"})).json()["session_id"]
        pupil = (await v3.post("/sessions", json={"node_id": "n"})).json()["session_id"]
        await v3.post(f"/sessions/{pupil}/observe", json={"strings": ["kept"]})
        for event in (["x"], ["y"], ["z"]):
            await v3.post(f"/sessions/{teacher}/observe", json={"strings": event})
        await v3.post(f"/sessions/{teacher}/learn")
        assert await manager.app.state.sessions.hibernate(pupil)
        listed = await manager.client.get(f"/admin/sessions/{pupil}", headers=ADMIN)
        assert listed.json()["status"] == "hibernated"
        # The next request restores it: its STM is back and it has its node's knowledge.
        assert (await v3.get(f"/sessions/{pupil}/stm")).json()["stm"] == [["kept"]]
        await v3.post(f"/sessions/{pupil}/clear-stm")
        for event in (["x"], ["y"]):
            await v3.post(f"/sessions/{pupil}/observe", json={"strings": event})
        futures = [
            p["future"]
            for p in (await v3.get(f"/sessions/{pupil}/predictions")).json()["predictions"]
        ]
        assert [["z"]] in futures


async def test_a_killed_processor_is_recovered_and_catches_up_with_its_node(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    manager = await start_manager(make_settings(kato_v3_api="on", kato_v3_auth="none"))
    async with httpx.AsyncClient(base_url=manager.base_url + "/v3", timeout=30) as v3:
        teacher = (await v3.post("/sessions", json={"node_id": "n"})).json()["session_id"]
        pupil = (await v3.post("/sessions", json={"node_id": "n"})).json()["session_id"]
        for events in ((["a"], ["b"], ["c"]), (["x"], ["y"], ["z"])):
            for event in events:
                await v3.post(f"/sessions/{teacher}/observe", json={"strings": event})
            await v3.post(f"/sessions/{teacher}/learn")
        await v3.post(f"/sessions/{pupil}/observe", json={"strings": ["kept"]})  # caught up
        record = await manager.app.state.store.get(pupil)
        os.killpg(int(record.handle.ref), signal.SIGKILL)
        # Nothing was learned since: the recovered processor (its journal replayed, no
        # checkpoint yet) still gets both patterns from the node's log.
        assert (await v3.get(f"/sessions/{pupil}/stm")).json()["stm"] == [["kept"]]
        await v3.post(f"/sessions/{pupil}/clear-stm")
        futures = []
        for first, second in ((["a"], ["b"]), (["x"], ["y"])):
            await v3.post(f"/sessions/{pupil}/clear-stm")
            await v3.post(f"/sessions/{pupil}/observe", json={"strings": first})
            await v3.post(f"/sessions/{pupil}/observe", json={"strings": second})
            predicted = (await v3.get(f"/sessions/{pupil}/predictions")).json()["predictions"]
            futures.append([p["future"] for p in predicted])
        assert [["c"]] in futures[0]
        assert [["z"]] in futures[1]
        # Each pattern counted once in the pupil's store.
        counted = (await v3.post(f"/sessions/{pupil}/finalize-training")).json()
        assert counted["patterns_processed"] == 2
