"""``PROCESS_UNIX_SOCKETS``: the proxy reaches the process backend's processors over a private
unix socket, falls back to their port, and leaves no socket behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
from pathlib import Path
from typing import Any

import httpx

from session_manager.backends.process import ProcessBackend
from session_manager.backends.process_sockets import ProcessorSockets
from session_manager.proxy.http1 import Http1Pool, parse_endpoint
from session_manager.proxy.websocket import WebSocketConnector
from tests.processes import start_processor
from tests.support.manager import Manager, SettingsFactory, StartManager, auth, status_of
from tests.support.net import free_port
from tests.support.timing import wait_for

OBSERVE = {"strings": ["hello"], "vectors": [], "emotives": {}}


def families(manager: Manager) -> set[socket.AddressFamily]:
    """The address families of the proxy's idle keep-alive connections to processors."""
    pool = manager.app.state.forwarder._pool
    return {
        conn.transport.get_extra_info("socket").family
        for conns in pool._idle.values()
        for conn in conns
        if conn.transport is not None and not conn.closed
    }


def sockets_of(manager: Manager) -> ProcessorSockets:
    backend = manager.app.state.backend
    inner = getattr(backend, "inner", backend)  # the warm pool wraps it
    assert isinstance(inner, ProcessBackend)
    assert inner.sockets is not None
    return inner.sockets


async def observe(manager: Manager, session: dict[str, Any]) -> httpx.Response:
    return await manager.client.post(
        f"/session/{session['session_id']}/observe", json=OBSERVE, headers=auth(session)
    )


def port_of(record: dict[str, Any]) -> int:
    return int(str(record["endpoint"]).rpartition(":")[2])


async def test_the_proxy_uses_the_processors_private_socket_and_removes_it_with_the_session(
    manager: Manager,
) -> None:
    session = await manager.create()
    assert (await observe(manager, session)).status_code == 200
    assert families(manager) == {socket.AF_UNIX}

    sockets = sockets_of(manager)
    path = Path(sockets.path(port_of(await status_of(manager, session))))
    assert stat.S_ISSOCK(path.lstat().st_mode)
    assert stat.S_IMODE(path.lstat().st_mode) == 0o600
    directory = path.parent.lstat()
    assert directory.st_uid == os.getuid()
    assert stat.S_IMODE(directory.st_mode) == 0o700

    deleted = await manager.client.delete(
        f"/session/{session['session_id']}", headers=auth(session)
    )
    assert deleted.status_code in (200, 204), deleted.text
    assert not path.exists()


async def test_without_its_socket_a_processor_is_reached_on_its_port(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    manager = await start_manager(make_settings(proxy_lane="off"))
    session = await manager.create()
    path = Path(sockets_of(manager).path(port_of(await status_of(manager, session))))
    path.unlink()  # as if removed under it: the next connection is a TCP one
    await manager.app.state.forwarder.aclose()  # no kept-alive socket to the old path
    assert (await observe(manager, session)).status_code == 200
    assert families(manager) == {socket.AF_INET}


async def test_off_processors_listen_on_their_port_only(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    manager = await start_manager(make_settings(process_unix_sockets="off"))
    session = await manager.create()
    assert (await observe(manager, session)).status_code == 200
    assert families(manager) == {socket.AF_INET}
    pid = int((await status_of(manager, session))["ref"])
    assert b"UNIX_SOCKET=" not in Path(f"/proc/{pid}/environ").read_bytes()


async def test_a_crashed_processors_socket_is_removed(manager: Manager) -> None:
    session = await manager.create()
    record = await status_of(manager, session)
    path = Path(sockets_of(manager).path(port_of(record)))
    assert path.exists()
    os.killpg(int(record["ref"]), signal.SIGKILL)  # no chance to remove it itself

    async def gone() -> bool:
        return not path.exists()

    assert await wait_for(gone, timeout_s=10)
    assert (await observe(manager, session)).status_code == 200  # recovered, on a new socket
    assert families(manager) == {socket.AF_UNIX}


def test_a_directory_that_is_not_private_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "d"
    shared = data_dir / "processors" / "sockets"
    shared.mkdir(parents=True, mode=0o700)
    shared.chmod(0o777)
    assert ProcessorSockets.for_data_dir(data_dir) is None
    shared.rmdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    shared.symlink_to(elsewhere)  # even a private target: never through a link
    assert ProcessorSockets.for_data_dir(data_dir) is None


def test_a_data_dir_too_long_for_a_socket_path_uses_a_private_temporary_one(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / ("x" * 100)
    sockets = ProcessorSockets.for_data_dir(data_dir)
    assert sockets is not None
    try:
        assert len(sockets.path(65535).encode()) < 100
        assert stat.S_IMODE(sockets.directory.stat().st_mode) == 0o700
        again = ProcessorSockets.for_data_dir(data_dir)  # a restarted manager's
        assert again is not None
        assert again.directory == sockets.directory
        assert sockets.for_key(("http", "127.0.0.1", 65535)) is None  # no processor there
    finally:
        sockets.close()
    assert not sockets.directory.exists()


async def test_requests_and_websockets_go_over_the_socket_and_fall_back_to_the_port(
    tmp_path: Path,
) -> None:
    """Against a real processor: a dead port is never tried while its socket answers, and a
    socket with nobody behind it is passed over for the port."""
    path = str(tmp_path / "p.sock")
    with start_processor(UNIX_SOCKET=path) as processor:
        live = processor.url
        dead = f"http://127.0.0.1:{free_port()}"
        sockets = {("http", "127.0.0.1", port_of({"endpoint": dead})): path}
        stale = {("http", "127.0.0.1", port_of({"endpoint": live})): str(tmp_path / "gone.sock")}
        for table, endpoint in ((sockets, dead), (stale, live)):
            pool = Http1Pool(
                max_in_flight=4,
                max_idle=4,
                keepalive_expiry_s=4,
                connect_timeout_s=5,
                read_timeout_s=5,
                unix_socket=table.get,
            )
            key = parse_endpoint(endpoint).key
            exchange = await pool.request(
                key, b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n", method="GET"
            )
            assert exchange.status == 200
            assert json.loads(await exchange.read())["processor_id"] == "p1"
            await pool.aclose()

            connector = WebSocketConnector(
                open_timeout_s=5, max_message_bytes=1 << 20, unix_socket=table.get
            )
            ws = await connector.connect(endpoint, "", [], "r1")
            try:
                await ws.send(json.dumps({"type": "ping", "payload": {}}))
                assert json.loads(await ws.recv())["type"] == "pong"
            finally:
                await ws.close()
