"""Finding 6: the edge has limits on header size and count, and on slow headers.

Against ``python -m session_manager`` (its own uvicorn, as deployed), over raw sockets: an
oversized header block or too many header lines is ``431`` and closed, headers that do not
arrive in time are ``408`` and closed, and 1,000 slowloris connections do not keep ``/health``
or a session from answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import time
from typing import Any

from tests.support.manager import (
    Manager,
    ManagerProcessFactory,
    SettingsFactory,
    StartManager,
    auth,
)

_READ_TIMEOUT_S = 10.0


async def _send_raw(port: int, request: bytes) -> bytes:
    """Send ``request`` and read until the server closes (bounded by ``_READ_TIMEOUT_S``)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            writer.write(request)
            await writer.drain()
        return await asyncio.wait_for(reader.read(), _READ_TIMEOUT_S)
    finally:
        writer.close()


async def test_an_oversized_header_block_is_431_and_closed(
    manager_process: ManagerProcessFactory, make_settings: SettingsFactory
) -> None:
    process = manager_process(make_settings())
    async with process.running() as manager:
        big = b"GET /health HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * (4 * 1024 * 1024) + b"\r\n\r\n"
        reply = await _send_raw(process.port, big)
        assert reply.startswith(b"HTTP/1.1 431 ")
        many = b"GET /health HTTP/1.1\r\nhost: x\r\n"
        many += b"".join(b"x-h%d: v\r\n" % i for i in range(500)) + b"\r\n"
        reply = await _send_raw(process.port, many)
        assert reply.startswith(b"HTTP/1.1 431 ")
        # Within the limits all is as before.
        fine = b"GET /health HTTP/1.1\r\nhost: x\r\nx-ok: " + b"a" * 8000
        fine += b"\r\nconnection: close\r\n\r\n"
        assert (await _send_raw(process.port, fine)).startswith(b"HTTP/1.1 200 ")
        assert (await manager.client.get("/health")).status_code == 200


async def test_headers_that_do_not_arrive_in_time_are_408_and_closed(
    manager_process: ManagerProcessFactory, make_settings: SettingsFactory
) -> None:
    process = manager_process(make_settings(header_timeout_s=1.0))
    async with process.running():
        reply = await _send_raw(process.port, b"GET /health HTTP/1.1\r\nhost: x\r\n")
        assert reply.startswith(b"HTTP/1.1 408 ")
        # A connection that never sends a byte is closed too (no reply to give).
        assert await _send_raw(process.port, b"") == b""


async def _slowloris(port: int, count: int) -> list[asyncio.StreamWriter]:
    """``count`` connections, each with a request line and one header, never finished."""
    writers = []
    for _ in range(count):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /health HTTP/1.1\r\nhost: x\r\n")
        writers.append(writer)
    await asyncio.gather(*(w.drain() for w in writers))
    return writers


async def test_a_thousand_slowloris_connections_leave_health_and_sessions_answering(
    manager_process: ManagerProcessFactory, make_settings: SettingsFactory
) -> None:
    # A long header timeout: the connections stay open through the whole measurement.
    process = manager_process(make_settings(header_timeout_s=120.0))
    async with process.running() as manager:
        session = await manager.create()
        sid = session["session_id"]
        writers = await _slowloris(process.port, 1000)
        try:
            latencies: list[float] = []
            for _ in range(100):
                started = time.perf_counter()
                health = await manager.client.get("/health")
                stm = await manager.client.get(f"/session/{sid}/stm", headers=auth(session))
                latencies.append(time.perf_counter() - started)
                assert health.status_code == 200
                assert stm.status_code == 200
            p99 = statistics.quantiles(latencies, n=100)[98]
            print(f"with 1000 slowloris connections: /health + /stm p99 = {p99 * 1000:.1f} ms")
        finally:
            for writer in writers:
                writer.close()
            await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)


def test_settings_have_the_documented_defaults(make_settings: SettingsFactory) -> None:
    settings = make_settings()
    assert settings.max_header_bytes == 65536
    assert settings.max_headers == 100
    assert settings.header_timeout_s == 10.0
    assert settings.proxy_max_in_flight_per_session == 64


async def test_one_session_cannot_take_the_proxy_pool_from_another(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    """A frozen processor holds its session's requests; beyond the cap they are 429 at once.

    The pool has room for 12 requests in flight and a session may hold 4: the stuck session's
    20 requests take 4 slots (16 are refused with ``Retry-After``), the other session answers.
    """
    manager = await start_manager(
        make_settings(
            proxy_max_connections=12,
            proxy_max_in_flight_per_session=4,
            proxy_read_timeout_s=30,
        )
    )
    stuck, other = await manager.create(), await manager.create(user_id="bob")
    pid = await _pid_of(manager, stuck)
    os.killpg(pid, signal.SIGSTOP)  # the processor stops answering, its port still accepts
    try:
        url = f"/session/{stuck['session_id']}/stm"
        pending = [
            asyncio.create_task(manager.client.get(url, headers=auth(stuck))) for _ in range(20)
        ]
        refused = []
        for task in asyncio.as_completed(pending[:], timeout=20):
            reply = await task
            if reply.status_code != 429:
                break
            refused.append(reply)
            if len(refused) == 16:
                break
        assert len(refused) == 16
        assert all(r.headers["Retry-After"] == "1" for r in refused)
        assert {r.json()["error"]["details"]["limit"] for r in refused} == {
            "PROXY_MAX_IN_FLIGHT_PER_SESSION"
        }
        for _ in range(5):
            reply = await manager.client.get(
                f"/session/{other['session_id']}/stm", headers=auth(other)
            )
            assert reply.status_code == 200
    finally:
        os.killpg(pid, signal.SIGCONT)
    answered = await asyncio.wait_for(asyncio.gather(*pending), 30)
    assert sum(r.status_code == 200 for r in answered) == 4


async def _pid_of(manager: Manager, session: dict[str, Any]) -> int:
    reply = await manager.client.get(
        f"/admin/sessions/{session['session_id']}", headers=manager.admin
    )
    return int(reply.json()["ref"])


async def test_a_body_that_does_not_arrive_in_time_is_408(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    manager = await start_manager(make_settings(body_read_timeout_s=1.0))
    session = await manager.create()
    port = int(manager.base_url.rsplit(":", 1)[1])
    head = (
        f"POST /session/{session['session_id']}/observe HTTP/1.1\r\nhost: x\r\n"
        f"authorization: Bearer {session['token']}\r\ncontent-type: application/json\r\n"
        "content-length: 100000\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + b'{"strings": ["a"')  # and nothing more
        await writer.drain()
        reply = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT_S)
    finally:
        writer.close()
    assert reply.startswith(b"HTTP/1.1 408 ")
    ok = await manager.client.post(
        f"/session/{session['session_id']}/observe", json={"strings": ["a"]}, headers=auth(session)
    )
    assert ok.status_code == 200


async def test_the_in_process_manager_serves_the_same_edge_as_a_deployment(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    """The fixture's server is ``serving.server_config``'s: its header limits apply too."""
    manager = await start_manager(make_settings(max_header_bytes=4096, max_headers=20))
    port = int(manager.base_url.rsplit(":", 1)[1])
    big = b"GET /health HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 8192 + b"\r\n\r\n"
    assert (await _send_raw(port, big)).startswith(b"HTTP/1.1 431 ")
    many = b"GET /health HTTP/1.1\r\nhost: x\r\n"
    many += b"".join(b"x-h%d: v\r\n" % i for i in range(30)) + b"\r\n"
    assert (await _send_raw(port, many)).startswith(b"HTTP/1.1 431 ")
    assert (await manager.client.get("/health")).status_code == 200


async def test_a_whole_request_in_one_read_is_not_taken_for_a_header_block(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    """Headers and a body past ``MAX_HEADER_BYTES`` sent in one write: the body is no header.

    The edge counted every read that ended back "in headers" as header bytes, and a request
    parsed whole within one read ends there (ready for the next one): a 10 KB observe sent
    in one write was ``431`` with ``MAX_HEADER_BYTES=4096``.
    """
    manager = await start_manager(make_settings(max_header_bytes=4096))
    session = await manager.create()
    port = int(manager.base_url.rsplit(":", 1)[1])
    body = b'{"strings": ["' + b"a" * 10_000 + b'"]}'
    request = (
        f"POST /session/{session['session_id']}/observe HTTP/1.1\r\nhost: x\r\n"
        f"authorization: Bearer {session['token']}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body
    reply = await _send_raw(port, request)
    assert reply.startswith(b"HTTP/1.1 200 "), reply[:200]
