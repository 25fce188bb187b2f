"""The embedded Redis is supervised: killed, it comes back with its data; stopped, it is gone."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path

import msgspec
import redis

from session_manager.embedded_redis import EmbeddedRedis
from tests.support.manager import Manager, SettingsFactory, StartManager, auth
from tests.support.pids import pid_running
from tests.support.timing import wait_for


async def _until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    async def check() -> bool:
        return condition()

    assert await wait_for(check, timeout_s, every_s=0.05), "condition not met in time"


async def test_a_killed_server_is_restarted_with_every_acknowledged_write(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    await asyncio.to_thread(server.start)
    server.watch()
    try:
        client = redis.Redis(unix_socket_path=server.socket_file)
        for n in range(200):
            client.set(f"k{n}", n)  # each answered OK: acknowledged
        first = server.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        await _until(lambda: server.restarts == 1 and server.up)
        assert server.pid != first
        client = redis.Redis(unix_socket_path=server.socket_file)
        assert [int(client.get(f"k{n}") or -1) for n in range(200)] == list(range(200))
    finally:
        await server.stop()
    assert not pid_running(first)
    assert server.pid is None


async def test_a_second_supervisor_adopts_a_running_server_instead_of_starting_another(
    tmp_path: Path,
) -> None:
    """What the next manager does after ``kill -9`` of the one that started the server."""
    first = EmbeddedRedis(tmp_path / "redis")
    await asyncio.to_thread(first.start)
    second = EmbeddedRedis(tmp_path / "redis")
    try:
        await asyncio.to_thread(second.start)
        assert second.pid == first.pid
    finally:
        await second.stop()
    assert first.pid is not None
    assert not pid_running(first.pid)


async def test_health_tells_the_truth_while_the_embedded_redis_is_down_and_sessions_come_back(
    make_settings: SettingsFactory, start_manager: StartManager
) -> None:
    manager: Manager = await start_manager(msgspec.structs.replace(make_settings(), redis_url=None))
    session = await manager.create()
    sid = session["session_id"]
    observed = await manager.client.post(
        f"/session/{sid}/observe", json={"strings": ["kept"]}, headers=auth(session)
    )
    assert observed.status_code == 200
    embedded: EmbeddedRedis = manager.app.state.redis.embedded
    watcher = embedded._watcher
    assert watcher is not None
    watcher.cancel()  # hold the restart back, to look at the manager while Redis is down
    pid = embedded.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    await _until(lambda: not embedded.up)
    health = await manager.client.get("/health")
    assert health.status_code == 503
    assert health.json()["error"]["code"] == "STORE_UNAVAILABLE"
    assert (await manager.client.get("/ready")).status_code == 503
    embedded.watch()
    await _until(lambda: embedded.up)
    assert (await manager.client.get("/health")).status_code == 200
    for _ in range(100):
        stm = await manager.client.get(f"/session/{sid}/stm", headers=auth(session))
        if stm.status_code == 200:
            break
        await asyncio.sleep(0.05)
    assert stm.json()["stm"] == [["kept"]]
    await manager.end_all()
