"""The reaper on real processors: idle sessions hibernate (or end), busy ones never go."""

from __future__ import annotations

from typing import Any

from session_manager.models import SessionStatus
from session_manager.reaper import Action, verdict
from tests.support.manager import (
    Manager,
    SettingsFactory,
    StartManager,
    auth,
    busy_session,
    status_of,
    view,
)
from tests.support.pids import pid_running
from tests.support.timing import ManualClock, wait_for

# Idle deadlines are read from the manager's clock: these tests move a ManualClock past them
# instead of sleeping. Real waits remain only for the timer to tick, a processor to stop and an
# in-flight touch to land in Redis.
_IDLE_S = 60
_STEP_S = 40  # less than the idle timeout: activity in every step keeps a session alive
_STEPS = 5  # 200 s of simulated traffic, more than three idle timeouts


async def test_idle_session_is_hibernated_by_the_timer_and_comes_back_unchanged(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    clock = ManualClock()
    manager = await start_manager(
        make_settings(idle_timeout_s=_IDLE_S, reap_interval_s=0.2), clock=clock
    )
    session = await busy_session(manager)
    before = await view(manager, session)
    pid = int((await status_of(manager, session))["ref"])

    async def hibernated() -> bool:
        return (await status_of(manager, session))["status"] == "hibernated"

    clock.advance(_IDLE_S + 1)  # the timer's next pass finds the session idle
    assert await wait_for(hibernated, timeout_s=5)
    assert not pid_running(pid)
    assert await view(manager, session) == before
    assert (await status_of(manager, session))["status"] == "ready"
    metrics = (await manager.client.get("/metrics")).text
    assert 'kato_reaped_total{reason="idle"}' in metrics


async def activity_recorded(manager: Manager, session: dict[str, Any], deadline: str) -> bool:
    """Wait (real time: the proxy touches in the background) until the idle deadline moves."""

    async def moved() -> bool:
        return (await status_of(manager, session))["idle_expires_at"] != deadline

    return await wait_for(moved, timeout_s=5, every_s=0.02)


async def reap_finds_nothing(manager: Manager) -> None:
    report = (await manager.client.post("/admin/reap", headers=manager.admin)).json()
    assert report["hibernated"] == []
    assert report["ended"] == {}


async def test_busy_sessions_are_never_reaped(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    clock = ManualClock()
    manager = await start_manager(
        make_settings(idle_timeout_s=_IDLE_S, reap_interval_s=0.2), clock=clock
    )
    by_http, by_keepalive = await manager.create(), await manager.create(user_id="bob")
    pids = {
        s["session_id"]: int((await status_of(manager, s))["ref"]) for s in (by_http, by_keepalive)
    }
    for _ in range(_STEPS):
        clock.advance(_STEP_S)
        deadlines = {
            s["session_id"]: (await status_of(manager, s))["idle_expires_at"]
            for s in (by_http, by_keepalive)
        }
        await manager.client.post(
            f"/session/{by_http['session_id']}/observe",
            json={"strings": ["x"]},
            headers=auth(by_http),
        )
        await manager.client.post(
            f"/session/{by_keepalive['session_id']}/keepalive", headers=auth(by_keepalive)
        )
        for session in (by_http, by_keepalive):
            assert await activity_recorded(manager, session, deadlines[session["session_id"]])
        await reap_finds_nothing(manager)
    for session in (by_http, by_keepalive):
        record = await status_of(manager, session)
        assert record["status"] == "ready"
        assert int(record["ref"]) == pids[session["session_id"]]


async def test_websocket_frames_keep_a_session_alive(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    import json

    from websockets.asyncio.client import connect

    clock = ManualClock()
    manager = await start_manager(
        make_settings(idle_timeout_s=_IDLE_S, reap_interval_s=0.2), clock=clock
    )
    session = await manager.create()
    url = f"{manager.ws_url}/session/{session['session_id']}/ws?token={session['token']}"
    async with connect(url) as ws:
        for _ in range(_STEPS):
            clock.advance(_STEP_S)
            deadline = (await status_of(manager, session))["idle_expires_at"]
            await ws.send(json.dumps({"type": "ping"}))
            assert json.loads(await ws.recv())["type"] == "pong"
            assert await activity_recorded(manager, session, deadline)
            await reap_finds_nothing(manager)
    assert (await status_of(manager, session))["status"] == "ready"


async def test_admin_reap_reports_and_delete_action_leaves_an_idle_tombstone(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    clock = ManualClock()
    manager = await start_manager(
        make_settings(idle_timeout_s=60, reap_action="delete"), clock=clock
    )
    idle, fresh = await manager.create(), await manager.create(user_id="bob")
    pid = int((await status_of(manager, idle))["ref"])
    clock.advance(61)
    await manager.client.post(f"/session/{fresh['session_id']}/keepalive", headers=auth(fresh))
    report = (await manager.client.post("/admin/reap", headers=manager.admin)).json()
    assert report["ended"] == {"idle": [idle["session_id"]]}
    assert report["hibernated"] == []
    assert not pid_running(pid)
    gone = await manager.client.get(f"/session/{idle['session_id']}/stm", headers=auth(idle))
    assert gone.status_code == 410
    assert gone.json()["error"]["details"]["reason"] == "idle"
    assert (await status_of(manager, fresh))["status"] == "ready"
    assert (await manager.client.post("/admin/reap")).status_code == 401


async def test_max_age_ends_even_a_busy_session(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    clock = ManualClock()
    manager = await start_manager(make_settings(max_age_s=100, idle_timeout_s=50), clock=clock)
    session = await manager.create()
    clock.advance(101)
    await manager.client.post(f"/session/{session['session_id']}/keepalive", headers=auth(session))
    report = (await manager.client.post("/admin/reap", headers=manager.admin)).json()
    assert report["ended"] == {"max_age": [session["session_id"]]}
    gone = await manager.client.get(f"/session/{session['session_id']}", headers=auth(session))
    assert gone.json()["error"]["details"]["reason"] == "max_age"


async def test_hibernated_sessions_end_after_the_hibernate_ttl(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    clock = ManualClock()
    manager = await start_manager(
        make_settings(idle_timeout_s=60, hibernate_ttl_s=600), clock=clock
    )
    session = await manager.create()
    clock.advance(61)
    assert (await manager.client.post("/admin/reap", headers=manager.admin)).json()[
        "hibernated"
    ] == [session["session_id"]]
    clock.advance(599)
    assert (await manager.client.post("/admin/reap", headers=manager.admin)).json()["ended"] == {}
    clock.advance(2)
    assert (await manager.client.post("/admin/reap", headers=manager.admin)).json()["ended"] == {
        "idle": [session["session_id"]]
    }
    gone = await manager.client.get(f"/session/{session['session_id']}", headers=auth(session))
    assert gone.status_code == 410


async def test_a_request_after_the_pass_looked_wins_over_the_reap(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    """The race, defined: the reap's transition requires the idle deadline it saw."""
    clock = ManualClock()
    manager = await start_manager(make_settings(idle_timeout_s=60), clock=clock)
    session = await manager.create()
    clock.advance(61)
    seen_at = clock.now_ms()
    await manager.client.post(f"/session/{session['session_id']}/keepalive", headers=auth(session))
    sessions = manager.app.state.sessions
    assert await sessions.hibernate(session["session_id"], only_if_idle_due_at=seen_at) is False
    assert await sessions.end(session["session_id"], "idle", only_if_idle_due_at=seen_at) is False
    assert (await status_of(manager, session))["status"] == "ready"


async def test_a_pass_over_many_sessions_takes_batches(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    clock = ManualClock()
    manager = await start_manager(
        make_settings(idle_timeout_s=60, reap_batch_size=2, reap_concurrency=2), clock=clock
    )
    sessions = [await manager.create(user_id=f"u{n}") for n in range(5)]
    clock.advance(61)
    report = (await manager.client.post("/admin/reap", headers=manager.admin)).json()
    assert sorted(report["hibernated"]) == sorted(s["session_id"] for s in sessions)
    assert report["examined"] == 5


def test_verdict_is_a_pure_decision() -> None:
    from session_manager.models import SessionRecord

    def record(status: SessionStatus, idle: int | None, hard: int | None) -> SessionRecord:
        return SessionRecord(
            session_id="s",
            user_id="u",
            kb_id="k",
            processor_id="p",
            status=status,
            created_at=0,
            last_activity=0,
            status_changed_at=0,
            idle_timeout_s=1,
            max_age_s=1,
            idle_deadline=idle,
            hard_deadline=hard,
        )

    assert verdict(record(SessionStatus.READY, 10, 100), 9, "hibernate") is None
    assert verdict(record(SessionStatus.READY, 10, 100), 10, "hibernate") == Action.HIBERNATE
    assert verdict(record(SessionStatus.READY, 10, 100), 10, "delete") == Action.END_IDLE
    assert verdict(record(SessionStatus.READY, 1000, 100), 100, "hibernate") == Action.END_MAX_AGE
    assert (
        verdict(record(SessionStatus.HIBERNATED, 10, 100), 10, "hibernate") == Action.END_HIBERNATED
    )
    for busy in (SessionStatus.STARTING, SessionStatus.HIBERNATING, SessionStatus.TERMINATING):
        assert verdict(record(busy, 0, 0), 10, "hibernate") is None
