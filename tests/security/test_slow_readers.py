"""Finding 6, the proxy's side: clients that never read their responses.

One user's clients that asked for big responses and never read them held the proxy's upstream
connections, so another user's requests waited for the read timeout and got ``504 too many
requests in flight``. Over raw sockets whose owner never reads (a 4 KiB receive buffer, a
session whose short-term memory is 2 MB beyond the most a socket's send buffer may grow to, so
a ``GET /stm`` cannot fit in the socket buffers):

* such a connection is aborted after ``CLIENT_WRITE_TIMEOUT_S`` (HTTP body or WebSocket frames)
  and the processor connection it held is let go: the session's next request gets through;
* while one user's sessions hold every upstream connection they may, another session's
  requests are answered at once (fair sharing of ``PROXY_MAX_CONNECTIONS``);
* a session opens at most ``PROXY_MAX_WEBSOCKETS_PER_SESSION`` WebSockets; beyond it the
  socket is closed with 4429 ``CAPACITY_EXCEEDED``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import statistics
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.support.manager import (
    Manager,
    ManagerProcessFactory,
    SettingsFactory,
    StartManager,
    auth,
)


def _megabytes_no_buffer_holds() -> int:
    """Megabytes of STM whose ``GET /stm`` the kernel cannot take whole for a non-reader.

    The server's send buffer grows up to ``tcp_wmem``'s maximum (4 MiB by default). With 4 MB,
    a response sometimes fit in it: the proxy was done, nothing waited on the client, and the
    connection stayed open like any idle keep-alive one.
    """
    try:
        most = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, ValueError, IndexError):
        most = 4 << 20
    return most // 1_000_000 + 2


_STM_MEGABYTES = _megabytes_no_buffer_holds()
_READ_TIMEOUT_S = 30.0
_ANSWER_TIMEOUT_S = 30.0
"""Generous: a starved request waits ``PROXY_READ_TIMEOUT_S`` (60 s here) and then gets 504."""


async def _fill_stm(manager: Manager, session: dict[str, Any]) -> int:
    """Observe ``_STM_MEGABYTES`` events of 1,000 distinct 1 kB symbols; the STM's JSON size."""
    base = f"/session/{session['session_id']}"
    for event in range(_STM_MEGABYTES):
        strings = [f"{event:04d}-{n:04d}-" + "x" * 990 for n in range(1000)]
        reply = await manager.client.post(
            f"{base}/observe", json={"strings": strings}, headers=auth(session)
        )
        assert reply.status_code == 200, reply.text
    stm = await manager.client.get(f"{base}/stm", headers=auth(session))
    assert stm.status_code == 200
    return len(stm.content)


def _port(base_url: str) -> int:
    return int(base_url.rsplit(":", 1)[1])


async def _sent_never_read(port: int, request: bytes) -> socket.socket:
    """A connection that sends ``request`` and then reads nothing (tiny receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(sock, request)
    return sock


async def _never_reading(port: int, request: bytes) -> socket.socket:
    """``_sent_never_read``, returning once the response has begun (peeked at, not read)."""
    sock = await _sent_never_read(port, request)
    for _ in range(200):
        with contextlib.suppress(BlockingIOError):
            if sock.recv(1, socket.MSG_PEEK):
                break
        await asyncio.sleep(0.05)
    return sock


def _get(path: str, session: dict[str, Any]) -> bytes:
    token = session["token"]
    return f"GET {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\r\n".encode()


async def _read_until_closed(sock: socket.socket) -> tuple[int, str]:
    """Read what the server still sends: bytes read and how it ended (eof, reset or timeout)."""
    loop = asyncio.get_running_loop()
    received = 0
    deadline = time.monotonic() + _READ_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), 3)
        except TimeoutError:
            return received, "timeout"
        except ConnectionResetError:
            return received, "reset"
        if not data:
            return received, "eof"
        received += len(data)
    return received, "timeout"


async def test_a_client_that_does_not_read_its_response_is_cut_off_and_frees_the_processor(
    manager_process: ManagerProcessFactory, make_settings: SettingsFactory
) -> None:
    """Two connections that never read hold the pool's two slots, until the write timeout.

    Before: they held them for good; the session's next request waited the read timeout
    (60 s) for a slot, then got 504, and the stuck connections stayed open.
    """
    process = manager_process(
        make_settings(
            client_write_timeout_s=2.0,
            proxy_max_connections=2,
            proxy_max_in_flight_per_session=2,
            proxy_read_timeout_s=60,
        )
    )
    process.log_level = "INFO"
    async with process.running() as manager:
        session = await manager.create()
        size = await _fill_stm(manager, session)
        path = f"/session/{session['session_id']}/stm"
        stuck = [await _never_reading(process.port, _get(path, session)) for _ in range(2)]
        try:
            started = time.perf_counter()
            reply = await asyncio.wait_for(
                manager.client.get(path, headers=auth(session)), _ANSWER_TIMEOUT_S
            )
            waited = time.perf_counter() - started
            assert reply.status_code == 200
            assert len(reply.content) == size
            print(f"next request answered after {waited:.1f} s (CLIENT_WRITE_TIMEOUT_S=2)")
            for sock in stuck:
                received, ended = await _read_until_closed(sock)
                assert ended in ("eof", "reset")
                assert received < size  # cut off, never completed
        finally:
            for sock in stuck:
                sock.close()
    assert "client did not read its response" in process.log_path.read_text()


def _ws_handshake(path: str, session: dict[str, Any]) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
        "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n"
        f"authorization: Bearer {session['token']}\r\n\r\n"
    ).encode()


def _text_frame(text: str) -> bytes:
    """A masked client text frame (mask 0: the payload goes as is)."""
    payload = text.encode()
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload), 0, 0, 0, 0]) + payload


async def _read_head(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    head = b""
    for _ in range(4096):
        if b"\r\n\r\n" in head:
            break
        head += await asyncio.wait_for(loop.sock_recv(sock, 1), _READ_TIMEOUT_S)
    return head


async def test_a_websocket_client_that_does_not_read_its_frames_is_cut_off(
    manager_process: ManagerProcessFactory, make_settings: SettingsFactory
) -> None:
    """Five big replies asked for, none read: the socket is aborted after the write timeout.

    Before: the bridge waited on the client forever, the connection stayed open.
    """
    process = manager_process(make_settings(client_write_timeout_s=2.0))
    async with process.running() as manager:
        session = await manager.create()
        size = await _fill_stm(manager, session)
        loop = asyncio.get_running_loop()
        path = f"/session/{session['session_id']}/ws"
        sock = await _never_reading(process.port, _ws_handshake(path, session))
        try:
            assert (await _read_head(sock)).startswith(b"HTTP/1.1 101 ")
            await loop.sock_sendall(sock, _text_frame('{"type": "get_stm"}') * 5)
            await asyncio.sleep(4)  # the write timeout passes while nothing is read
            received, ended = await _read_until_closed(sock)
        finally:
            sock.close()
        assert ended in ("eof", "reset")
        assert received < 5 * size
        # The session is fine: a client that reads gets its replies.
        reader = connect(manager.ws_url + path, additional_headers=auth(session), max_size=None)
        async with reader as ws:
            await ws.send('{"type": "get_stm"}')
            assert len(await asyncio.wait_for(ws.recv(), _READ_TIMEOUT_S)) >= size


async def test_a_websocket_client_that_does_not_read_cannot_queue_work_without_end(
    manager_process: ManagerProcessFactory, make_settings: SettingsFactory
) -> None:
    """Five big replies unread, then 100 observations: at most 16 frames reach the processor.

    Before: the bridge passed every frame on while the replies piled up, and the processor
    applied all 100 observations for a client that read nothing.
    """
    process = manager_process(make_settings(client_write_timeout_s=2.0))
    async with process.running() as manager:
        session = await manager.create()
        await _fill_stm(manager, session)
        base = f"/session/{session['session_id']}"
        before = (await manager.client.get(f"{base}/status", headers=auth(session))).json()
        loop = asyncio.get_running_loop()
        sock = await _never_reading(process.port, _ws_handshake(f"{base}/ws", session))
        try:
            assert (await _read_head(sock)).startswith(b"HTTP/1.1 101 ")
            observe = (
                '{"type": "observe", "payload": {"strings": ["z"], "vectors": [], "emotives": {}}}'
            )
            frames = _text_frame('{"type": "get_stm"}') * 5 + _text_frame(observe) * 100
            with contextlib.suppress(OSError):  # the bridge stops reading: the send may stall
                await asyncio.wait_for(loop.sock_sendall(sock, frames), 5)
            await asyncio.sleep(4)  # the write timeout passes while nothing is read
            _, ended = await _read_until_closed(sock)
            assert ended in ("eof", "reset")
        finally:
            sock.close()
        status = await asyncio.wait_for(
            manager.client.get(f"{base}/status", headers=auth(session)), _ANSWER_TIMEOUT_S
        )
        applied = status.json()["time"] - before["time"]
        print(f"observations applied for a client that read nothing: {applied} of 100")
        assert applied <= 16


async def _reaches_pool(manager: Manager, request: bytes) -> socket.socket:
    """Send ``request`` on a never-reading connection; return once the pool has it.

    Holding a slot or queued for one: the next request then arrives after it, so which
    session gets which slot follows the order of the requests.
    """
    slots = manager.app.state.forwarder._pool.slots

    def seen() -> int:
        return int(slots.in_use + sum(len(queue) for queue in slots._waiting.values()))

    before = seen()
    sock = await _sent_never_read(_port(manager.base_url), request)
    for _ in range(200):
        if seen() > before:
            break
        await asyncio.sleep(0.05)
    return sock


async def _slots_in_use(manager: Manager, expected: int) -> int:
    """The pool's slots in use once ``expected`` are taken (bounded wait)."""
    slots = manager.app.state.forwarder._pool.slots
    for _ in range(100):
        if slots.in_use >= expected:
            break
        await asyncio.sleep(0.1)
    in_use: int = slots.in_use
    return in_use


async def test_one_users_non_reading_clients_do_not_starve_another_session(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    """Mallory's three sessions ask for 24 big responses and read none; Bob keeps his answers.

    The pool has 16 slots, a session may hold 8: mallory's first two sessions hold 12 (the
    open three quarters), her third 2 of the reserve, and 2 stay for sessions that hold fewer
    than 2. The write timeout is set far beyond the test's length: fairness alone must keep
    Bob going (with the default 30 s, the timeout aborted mallory's first connections midway
    and the slots were no longer held as described). Before: mallory's clients held all 16
    slots and Bob's request waited 60 s, then 504.
    """
    manager = await start_manager(
        make_settings(
            proxy_max_connections=16,
            proxy_max_in_flight_per_session=8,
            proxy_read_timeout_s=60,
            client_write_timeout_s=3600,
        )
    )
    mallory = [await manager.create(user_id="mallory") for _ in range(3)]
    for session in mallory:
        await _fill_stm(manager, session)
    bob = await manager.create(user_id="bob")
    stuck = [
        await _reaches_pool(manager, _get(f"/session/{session['session_id']}/stm", session))
        for session in mallory
        for _ in range(8)
    ]
    try:
        assert await _slots_in_use(manager, 14) == 14
        latencies = []
        for _ in range(20):
            started = time.perf_counter()
            reply = await asyncio.wait_for(
                manager.client.get(f"/session/{bob['session_id']}/stm", headers=auth(bob)),
                _ANSWER_TIMEOUT_S,
            )
            latencies.append(time.perf_counter() - started)
            assert reply.status_code == 200
        p99 = statistics.quantiles(latencies, n=100)[98]
        print(f"bob's /stm while mallory holds 14 of 16 slots: p99 = {p99 * 1000:.1f} ms")
    finally:
        for sock in stuck:
            sock.close()


async def test_websockets_per_session_are_capped(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    """Beyond PROXY_MAX_WEBSOCKETS_PER_SESSION, a socket is closed 4429 CAPACITY_EXCEEDED."""
    manager = await start_manager(make_settings(proxy_max_websockets_per_session=2))
    session, other = await manager.create(), await manager.create(user_id="bob")
    url = f"{manager.ws_url}/session/{session['session_id']}/ws"
    async with contextlib.AsyncExitStack() as stack:
        open_ = [
            await stack.enter_async_context(connect(url, additional_headers=auth(session)))
            for _ in range(2)
        ]
        async with connect(url, additional_headers=auth(session)) as third:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(third.recv(), _READ_TIMEOUT_S)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4429, "CAPACITY_EXCEEDED")
        for ws in open_:  # the open ones still work
            await ws.send('{"type": "ping"}')
            assert "pong" in await asyncio.wait_for(ws.recv(), _READ_TIMEOUT_S)
        other_url = f"{manager.ws_url}/session/{other['session_id']}/ws"
        async with connect(other_url, additional_headers=auth(other)) as ws:
            await ws.send('{"type": "ping"}')
            assert "pong" in await asyncio.wait_for(ws.recv(), _READ_TIMEOUT_S)
    # Closed sockets give their places back (once the server has seen them end).
    connector = manager.app.state.forwarder.websockets
    for _ in range(100):
        if not connector._open:
            break
        await asyncio.sleep(0.1)
    async with (
        connect(url, additional_headers=auth(session)) as first,
        connect(url, additional_headers=auth(session)) as second,
    ):
        for ws in (first, second):
            await ws.send('{"type": "ping"}')
            assert "pong" in await asyncio.wait_for(ws.recv(), _READ_TIMEOUT_S)


def test_settings_have_the_documented_defaults(make_settings: SettingsFactory) -> None:
    settings = make_settings()
    assert settings.client_write_timeout_s == 30.0
    assert settings.proxy_max_websockets_per_session == 16
    assert settings.proxy_max_connections == 512
