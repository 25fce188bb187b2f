"""What stopping the manager (SIGINT, SIGTERM) does to sessions: ``SHUTDOWN_ACTION``, for real.

Every manager here is ``python -m session_manager`` as a process, stopped by a signal the way a
terminal's Ctrl-C or ``docker stop`` stops it.
"""

from __future__ import annotations

import logging
import signal
from typing import Any

import msgspec
import pytest

from session_manager.settings import Settings
from session_manager.store import Keys
from tests.support.manager import (
    Manager,
    ManagerProcess,
    ManagerProcessFactory,
    SettingsFactory,
    StartManager,
    auth,
    busy_session,
    view,
)
from tests.support.pids import processes_of
from tests.support.redis_server import RedisServer

SHUTDOWN_TIMEOUT_S = 20


def embedded(settings: Settings, **fields: Any) -> Settings:
    """The ``make run`` default (embedded Redis, process backend) with ``fields`` changed.

    Without its warm pool (``test_warm_pool`` covers it): these tests count processors.
    """
    return msgspec.structs.replace(settings, redis_url=None, **{"warm_pool_size": 0, **fields})


async def sessions_with_state(manager: Manager, count: int = 2) -> list[dict[str, Any]]:
    """``count`` sessions that learned, changed genes and hold STM (see ``busy_session``)."""
    return [await busy_session(manager) for _ in range(count)]


async def stop(process: ManagerProcess, manager: Manager, sig: signal.Signals) -> None:
    """Send ``sig`` and wait, bounded by the shutdown timeout, for the manager to exit."""
    await manager.aclose()
    assert process.process is not None
    process.process.send_signal(sig)
    process.process.wait(SHUTDOWN_TIMEOUT_S + 20)


async def test_ctrl_c_on_the_embedded_default_hibernates_and_a_restart_restores_every_session(
    manager_process: ManagerProcessFactory, make_settings: SettingsFactory, manager_id: str
) -> None:
    process = manager_process(embedded(make_settings(shutdown_timeout_s=SHUTDOWN_TIMEOUT_S)))
    manager = await process.start()
    sessions = await sessions_with_state(manager)
    before = [await view(manager, session) for session in sessions]
    assert len(processes_of(manager_id)) == len(sessions)

    await stop(process, manager, signal.SIGINT)
    assert processes_of(manager_id) == {}  # nothing of this deployment keeps running

    manager = await process.start()
    try:
        for session in sessions:
            record = await manager.client.get(
                f"/session/{session['session_id']}", headers=auth(session)
            )
            assert record.json()["status"] == "hibernated"
        assert processes_of(manager_id) == {}  # restored on demand, not at start-up
        assert [await view(manager, session) for session in sessions] == before
        assert set(processes_of(manager_id).values()) == {s["session_id"] for s in sessions}
    finally:
        await manager.end_all()
        await manager.aclose()


async def test_keep_leaves_processors_running_and_the_next_manager_adopts_them(
    manager_process: ManagerProcessFactory, make_settings: SettingsFactory, manager_id: str
) -> None:
    process = manager_process(embedded(make_settings(), shutdown_action="keep"))
    manager = await process.start()
    sessions = await sessions_with_state(manager)
    before = [await view(manager, session) for session in sessions]
    pids = processes_of(manager_id)

    await stop(process, manager, signal.SIGINT)
    assert processes_of(manager_id) == pids

    manager = await process.start()
    try:
        assert [await view(manager, session) for session in sessions] == before
        assert processes_of(manager_id) == pids  # the same processors, adopted
    finally:
        await manager.end_all()
        await manager.aclose()


async def test_delete_ends_every_session_with_the_reason_manager_stopped(
    manager_process: ManagerProcessFactory, make_settings: SettingsFactory, manager_id: str
) -> None:
    process = manager_process(make_settings(shutdown_action="delete"))
    manager = await process.start()
    sessions = await sessions_with_state(manager)

    await stop(process, manager, signal.SIGTERM)
    assert processes_of(manager_id) == {}

    manager = await process.start()
    try:
        for session in sessions:
            reply = await manager.client.get(
                f"/session/{session['session_id']}/stm", headers=auth(session)
            )
            assert reply.status_code == 410
            assert reply.json()["error"]["details"]["reason"] == "manager_stopped"
    finally:
        await manager.aclose()


async def test_stopping_one_replica_leaves_the_sessions_to_the_other_until_it_stops_too(
    manager_process: ManagerProcessFactory,
    make_settings: SettingsFactory,
    manager_id: str,
    redis_server: RedisServer,
) -> None:
    settings = make_settings(shutdown_action="hibernate")
    first, second = manager_process(settings), manager_process(settings)
    one, other = await first.start(), await second.start()
    sessions = [await busy_session(one), await busy_session(other)]
    pids = processes_of(manager_id)

    await stop(first, one, signal.SIGTERM)
    assert processes_of(manager_id) == pids
    for session in sessions:
        record = await other.client.get(f"/session/{session['session_id']}", headers=auth(session))
        assert record.json()["status"] == "ready"

    await stop(second, other, signal.SIGTERM)  # the last replica of the deployment: it acts
    assert processes_of(manager_id) == {}
    keys = Keys(settings.redis_prefix)
    with redis_server.client() as client:
        statuses = [client.hget(keys.session(s["session_id"]), "status") for s in sessions]
        assert statuses == [b"hibernated", b"hibernated"]
        assert client.zcard(keys.replicas) == 0


async def test_sessions_not_reached_within_the_timeout_are_left_running_and_adopted(
    manager_process: ManagerProcessFactory, make_settings: SettingsFactory, manager_id: str
) -> None:
    # One at a time, and no time at all: at most the first hibernation may begin.
    settings = embedded(make_settings(), shutdown_timeout_s=0.001, reap_concurrency=1)
    process = manager_process(settings)
    manager = await process.start()
    sessions = await sessions_with_state(manager, 3)
    before = [await view(manager, session) for session in sessions]
    pids = processes_of(manager_id)

    await stop(process, manager, signal.SIGTERM)
    left = processes_of(manager_id)
    assert len(left) >= 2
    assert left.items() <= pids.items()  # the ones left are the same processors, untouched
    output = process.log_path.read_text()
    assert "shutdown timeout: sessions left running for the next manager" in output
    assert all(str(session_id) in output for session_id in left.values())

    manager = await process.start()
    try:
        assert [await view(manager, session) for session in sessions] == before
    finally:
        await manager.end_all()
        await manager.aclose()


async def test_the_start_up_log_names_the_effective_shutdown_action(
    start_manager: StartManager, make_settings: SettingsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="session_manager.app"):
        await start_manager(make_settings())
    started = [r for r in caplog.records if r.getMessage() == "manager started"]
    # An external Redis is a deployment: processors outlive a manager restart.
    assert [getattr(r, "shutdown_action", None) for r in started] == ["keep"]
