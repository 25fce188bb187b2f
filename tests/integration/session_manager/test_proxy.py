"""The HTTP reverse proxy, ``ANY /session/{id}/{path}``, against real servers on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.integration.session_manager.proxy_fixtures import (
    EchoUpstream,
    ProxyHarness,
    ProxySession,
    echo_manager,
)
from tests.support.manager import SettingsFactory, StartManager, auth
from tests.support.net import free_port, serve


@pytest.fixture(name="harness")
async def fx_harness(
    start_manager: StartManager, make_settings: SettingsFactory
) -> AsyncIterator[ProxyHarness]:
    async with echo_manager(
        start_manager, make_settings, proxy_read_timeout_s=0.5, max_proxy_body_bytes=64 * 1024
    ) as harness:
        yield harness


@pytest.fixture(name="client")
async def fx_client(harness: ProxyHarness) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=harness.base_url, trust_env=False) as client:
        yield client


@pytest.fixture(name="session")
async def fx_session(harness: ProxyHarness) -> ProxySession:
    return await harness.open_session()


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def test_method_path_query_and_body_reach_the_processor(
    client: httpx.AsyncClient, session: ProxySession, method: str
) -> None:
    body = b'{"strings": ["hello"]}' if method in ("POST", "PUT", "PATCH") else b""
    response = await client.request(
        method,
        f"/session/{session.id}/observe/deep",
        params={"unique_id": "u 1", "x": "1"},
        content=body,
        headers=session.auth,
    )
    assert response.status_code == 200
    seen = response.json()
    assert seen["method"] == method
    assert seen["path"] == "/observe/deep"
    assert seen["query"] == "unique_id=u+1&x=1"
    assert seen["body"] == body.decode()


@pytest.mark.parametrize(
    ("status", "content_type"),
    [(201, "application/json"), (404, "text/plain; charset=utf-8"), (500, "application/problem")],
)
async def test_status_and_content_type_come_back_unchanged(
    client: httpx.AsyncClient, session: ProxySession, status: int, content_type: str
) -> None:
    response = await client.post(
        f"/session/{session.id}/learn",
        params={"status": str(status), "ctype": content_type},
        headers=session.auth,
    )
    assert response.status_code == status
    assert response.headers["content-type"] == content_type
    assert response.json()["path"] == "/learn"


async def test_head_answers_headers_without_a_body(
    client: httpx.AsyncClient, session: ProxySession
) -> None:
    response = await client.head(f"/session/{session.id}/stm", headers=session.auth)
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["x-upstream"] == "yes"
    again = await client.get(f"/session/{session.id}/stm", headers=session.auth)
    assert again.json()["method"] == "GET"


@pytest.mark.parametrize("status", [204, 304])
async def test_bodiless_statuses_pass_through_and_the_socket_is_reused(
    harness: ProxyHarness, client: httpx.AsyncClient, session: ProxySession, status: int
) -> None:
    reply = await client.get(
        f"/session/{session.id}/clear-stm", params={"status": str(status)}, headers=session.auth
    )
    assert reply.status_code == status
    assert reply.content == b""
    after = await client.get(f"/session/{session.id}/stm", headers=session.auth)
    assert after.json()["path"] == "/stm"
    assert len(harness.upstream.clients) == 1


async def test_percent_encoded_path_reaches_the_processor_as_sent(
    client: httpx.AsyncClient, session: ProxySession
) -> None:
    response = await client.get(
        f"/session/{session.id}/pattern/PTRN%7Cabc%2Fdef", headers=session.auth
    )
    assert response.json()["path"] == "/pattern/PTRN%7Cabc%2Fdef"


async def test_session_token_and_hop_by_hop_headers_are_not_forwarded(
    client: httpx.AsyncClient, session: ProxySession
) -> None:
    response = await client.get(
        f"/session/{session.id}/status",
        headers={
            **session.auth,
            "Connection": "keep-alive, X-Per-Hop",
            "X-Per-Hop": "private",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Trailer": "X-Checksum",
            "Proxy-Authorization": "Basic cHJveHk6c2VjcmV0",
            "X-End-To-End": "kept",
            "X-Kato-Seq": "forged",  # the manager's internal namespace
        },
    )
    forwarded = {name for name, _ in response.json()["headers"]}
    assert "x-end-to-end" in forwarded
    for dropped in (
        "x-kato-seq",
        "authorization",
        "x-per-hop",
        "keep-alive",
        "te",
        "trailer",
        "proxy-authorization",
    ):
        assert dropped not in forwarded
    # The processor's own hop-by-hop headers do not come back either; end-to-end ones do.
    assert response.headers["x-upstream"] == "yes"
    assert "x-per-hop" not in response.headers
    assert "keep-alive" not in response.headers


async def test_request_id_from_the_client_is_forwarded_and_returned(
    client: httpx.AsyncClient, session: ProxySession
) -> None:
    response = await client.get(
        f"/session/{session.id}/stm", headers={**session.auth, "X-Request-ID": "trace-42"}
    )
    assert response.headers["x-request-id"] == "trace-42"
    assert ["x-request-id", "trace-42"] in response.json()["headers"]


async def test_request_id_is_generated_when_the_client_sends_none(
    client: httpx.AsyncClient, session: ProxySession
) -> None:
    first = await client.get(f"/session/{session.id}/stm", headers=session.auth)
    second = await client.get(f"/session/{session.id}/stm", headers=session.auth)
    generated = first.headers["x-request-id"]
    assert generated
    assert generated != second.headers["x-request-id"]
    assert ["x-request-id", generated] in first.json()["headers"]


async def test_request_id_that_is_not_a_plain_token_is_replaced(
    client: httpx.AsyncClient, session: ProxySession
) -> None:
    response = await client.get(
        f"/session/{session.id}/stm", headers={**session.auth, "X-Request-ID": "a b\tc"}
    )
    assert response.headers["x-request-id"] != "a b\tc"


async def test_requests_reuse_pooled_connections_to_the_processor(
    harness: ProxyHarness, client: httpx.AsyncClient, session: ProxySession
) -> None:
    for _ in range(20):
        response = await client.post(f"/session/{session.id}/observe", headers=session.auth)
        assert response.status_code == 200
    assert harness.upstream.requests == 20
    assert len(harness.upstream.clients) == 1


async def test_concurrent_requests_all_get_their_own_answer(
    client: httpx.AsyncClient, session: ProxySession
) -> None:
    async def one(i: int) -> str:
        response = await client.post(
            f"/session/{session.id}/observe", params={"i": str(i)}, headers=session.auth
        )
        return str(response.json()["query"])

    answers = await asyncio.gather(*(one(i) for i in range(40)))
    assert answers == [f"i={i}" for i in range(40)]


async def test_processor_that_cannot_be_reached_gives_502(
    harness: ProxyHarness, client: httpx.AsyncClient
) -> None:
    session = await harness.open_session(endpoint=f"http://127.0.0.1:{free_port()}")
    response = await client.get(f"/session/{session.id}/stm", headers=session.auth)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "PROCESSOR_UNAVAILABLE"


async def test_processor_slower_than_the_read_timeout_gives_504(
    client: httpx.AsyncClient, session: ProxySession
) -> None:
    response = await client.get(
        f"/session/{session.id}/slow", params={"s": "3"}, headers=session.auth
    )
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "PROCESSOR_TIMEOUT"
    # The timed-out connection is not reused: the next request gets a fresh answer.
    after = await client.get(f"/session/{session.id}/stm", headers=session.auth)
    assert after.status_code == 200
    assert after.json()["path"] == "/stm"


async def test_body_over_the_limit_gives_413_and_is_not_forwarded(
    harness: ProxyHarness, client: httpx.AsyncClient, session: ProxySession
) -> None:
    response = await client.post(
        f"/session/{session.id}/observe", content=b"x" * (64 * 1024 + 1), headers=session.auth
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "BODY_TOO_LARGE"
    assert harness.upstream.requests == 0


async def test_chunked_body_over_the_limit_gives_413(
    client: httpx.AsyncClient, session: ProxySession
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"x" * 8192

    response = await client.post(
        f"/session/{session.id}/observe", content=chunks(), headers=session.auth
    )
    assert response.status_code == 413


async def test_chunked_body_under_the_limit_arrives_whole_with_a_length(
    client: httpx.AsyncClient, session: ProxySession
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(5):
            yield f"part{i};".encode()

    response = await client.post(
        f"/session/{session.id}/observe", content=chunks(), headers=session.auth
    )
    seen = response.json()
    assert seen["body"] == "part0;part1;part2;part3;part4;"
    assert ["content-length", "30"] in seen["headers"]
    assert "transfer-encoding" not in {name for name, _ in seen["headers"]}


async def test_large_response_is_streamed_through_whole(
    client: httpx.AsyncClient, session: ProxySession
) -> None:
    size = 3 * 1024 * 1024 + 17
    async with client.stream(
        "GET", f"/session/{session.id}/big", params={"n": str(size)}, headers=session.auth
    ) as response:
        assert response.status_code == 200
        received = 0
        async for chunk in response.aiter_bytes():
            assert set(chunk) <= {ord("x")}
            received += len(chunk)
    assert received == size


async def test_each_request_moves_the_idle_deadline(
    harness: ProxyHarness, client: httpx.AsyncClient, session: ProxySession
) -> None:
    for _ in range(3):
        harness.clock.advance(10)
        now = harness.clock.now_ms()
        response = await client.get(f"/session/{session.id}/stm", headers=session.auth)
        assert response.status_code == 200
        assert await harness.last_activity_ms(session.id) == now


async def test_wrong_token_gives_401_and_reaches_no_processor(
    harness: ProxyHarness, client: httpx.AsyncClient, session: ProxySession
) -> None:
    response = await client.get(
        f"/session/{session.id}/stm", headers={"Authorization": "Bearer wrong"}
    )
    assert response.status_code == 401
    missing = await client.get(f"/session/{session.id}/stm")
    assert missing.status_code == 401
    assert harness.upstream.requests == 0


async def test_unknown_session_gives_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/session/nope/stm", headers={"Authorization": "Bearer x"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "SESSION_NOT_FOUND"


@contextlib.asynccontextmanager
async def raw_processor(reply: bytes) -> AsyncIterator[str]:
    """A bare TCP server that reads one request head, writes ``reply`` verbatim and hangs up."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


async def test_body_ended_by_the_processor_closing_comes_back_whole(
    harness: ProxyHarness, client: httpx.AsyncClient
) -> None:
    reply = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nuntil close"
    async with raw_processor(reply) as endpoint:
        session = await harness.open_session(endpoint=endpoint)
        response = await client.get(f"/session/{session.id}/legacy", headers=session.auth)
    assert response.status_code == 200
    assert response.text == "until close"


async def test_processor_hanging_up_mid_body_gives_502(
    harness: ProxyHarness, client: httpx.AsyncClient
) -> None:
    reply = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 100\r\n\r\nshort"
    async with raw_processor(reply) as endpoint:
        session = await harness.open_session(endpoint=endpoint)
        response = await client.get(f"/session/{session.id}/cut", headers=session.auth)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "PROCESSOR_UNAVAILABLE"


async def test_processor_answering_garbage_gives_502(
    harness: ProxyHarness, client: httpx.AsyncClient
) -> None:
    async with raw_processor(b"SSH-2.0-OpenSSH_9.6\r\n\r\n") as endpoint:
        session = await harness.open_session(endpoint=endpoint)
        response = await client.get(f"/session/{session.id}/stm", headers=session.auth)
    assert response.status_code == 502


async def test_socket_the_processor_closed_while_idle_is_not_reused(
    harness: ProxyHarness, client: httpx.AsyncClient
) -> None:
    upstream = EchoUpstream()
    async with serve(upstream, timeout_keep_alive=1) as endpoint:
        session = await harness.open_session(endpoint=endpoint)
        first = await client.get(f"/session/{session.id}/stm", headers=session.auth)
        await asyncio.sleep(1.5)  # the processor drops the idle keep-alive socket
        second = await client.get(f"/session/{session.id}/stm", headers=session.auth)
    assert (first.status_code, second.status_code) == (200, 200)
    assert len(upstream.clients) == 2


async def test_https_processor_with_an_untrusted_certificate_gives_502(
    harness: ProxyHarness, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    upstream = EchoUpstream()
    async with serve(upstream, ssl_certfile=str(cert), ssl_keyfile=str(key)) as endpoint:
        assert endpoint.startswith("https://")
        session = await harness.open_session(endpoint=endpoint)
        response = await client.get(f"/session/{session.id}/stm", headers=session.auth)
    assert response.status_code == 502
    assert response.json()["error"]["details"]["reason"] == "SSLCertVerificationError"
    assert upstream.requests == 0


async def test_proxied_requests_are_counted_by_status_in_metrics(
    harness: ProxyHarness, client: httpx.AsyncClient, session: ProxySession
) -> None:
    await client.get(f"/session/{session.id}/stm", headers=session.auth)
    await client.get(f"/session/{session.id}/stm", params={"status": "404"}, headers=session.auth)
    down = await harness.open_session(endpoint=f"http://127.0.0.1:{free_port()}")
    await client.get(f"/session/{down.id}/stm", headers=down.auth)
    text = (await client.get("/metrics")).text
    assert 'kato_proxy_requests_total{status="200"} 1.0' in text
    assert 'kato_proxy_requests_total{status="404"} 1.0' in text
    assert 'kato_proxy_requests_total{status="502"} 1.0' in text
    assert "kato_proxy_latency_seconds_count 3.0" in text


# -- real processors (python -m processor_image through the process backend) ----------------------


async def test_killed_processor_gives_502_with_the_journal_off(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    """With ``JOURNAL=on`` (the default) it is recovered instead: see test_crash_recovery."""
    manager = await start_manager(make_settings(journal="off"))
    session = await manager.create()
    sid = session["session_id"]
    ok = await manager.client.post(
        f"/session/{sid}/observe", json={"strings": ["a"]}, headers=auth(session)
    )
    assert ok.status_code == 200
    assert ok.headers["content-type"].startswith("application/json")
    record = await manager.client.get(f"/admin/sessions/{sid}", headers=manager.admin)
    os.killpg(int(record.json()["ref"]), signal.SIGKILL)
    for _ in range(2):  # the pooled socket is gone too: no stale reuse, no hang
        down = await manager.client.get(f"/session/{sid}/stm", headers=auth(session))
        assert down.status_code == 502
        assert down.json()["error"]["code"] == "PROCESSOR_UNAVAILABLE"


async def test_manager_routes_under_the_session_path_are_not_proxied(
    harness: ProxyHarness, client: httpx.AsyncClient, session: ProxySession
) -> None:
    record = await client.get(f"/session/{session.id}", headers=session.auth)
    assert record.status_code == 200
    assert record.json()["session_id"] == session.id
    kept = await client.post(f"/session/{session.id}/keepalive", headers=session.auth)
    assert kept.status_code == 200
    created = await client.post(
        "/session/create", json={"user_id": "proxy-tests"}, headers=harness.manager.creator
    )
    assert created.status_code == 201
    assert harness.upstream.requests == 0
    # The manager owns ``keepalive`` and ``ws`` below a session (Litestar matches static
    # segments first and does not fall back); the processor has no such paths.
    nested = await client.post(f"/session/{session.id}/keepalive/extra", headers=session.auth)
    assert nested.status_code == 404
    assert harness.upstream.requests == 0
    assert (await client.get(f"/session/{session.id}/stm", headers=session.auth)).status_code == 200
    assert (await client.delete(f"/session/{session.id}", headers=session.auth)).status_code == 204
    assert harness.upstream.requests == 1


async def test_requests_over_the_in_flight_limit_wait_their_turn(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    async with echo_manager(start_manager, make_settings, proxy_max_connections=2) as harness:
        session = await harness.open_session()
        async with httpx.AsyncClient(base_url=harness.base_url, trust_env=False) as client:
            replies = await asyncio.gather(
                *(
                    client.get(
                        f"/session/{session.id}/slow", params={"s": "0.2"}, headers=session.auth
                    )
                    for _ in range(6)
                )
            )
    assert [reply.status_code for reply in replies] == [200] * 6
    assert harness.upstream.max_active == 2


async def test_errors_answered_before_the_router_keep_the_error_json_and_request_id(
    client: httpx.AsyncClient, session: ProxySession
) -> None:
    """The proxy route is served in front of Litestar (``api.proxy_front``): same answers."""
    unknown = await client.post("/session/nope/observe", headers={"X-Request-ID": "trace-7"})
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/json"
    assert unknown.headers["x-request-id"] == "trace-7"
    assert unknown.json() == {
        "error": {
            "code": "SESSION_NOT_FOUND",
            "message": unknown.json()["error"]["message"],
            "details": unknown.json()["error"]["details"],
        },
        "status": 404,
    }
    wrong = await client.get(f"/session/{session.id}/stm", headers=auth({"token": "x" * 43}))
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (401, "UNAUTHORIZED")
    assert wrong.headers["x-request-id"]
    other_method = await client.request("TRACE", f"/session/{session.id}/stm", headers=session.auth)
    assert (other_method.status_code, other_method.json()["error"]["code"]) == (
        405,
        "METHOD_NOT_ALLOWED",
    )


async def test_expect_100_continue_is_answered_before_the_body_is_sent(
    harness: ProxyHarness, session: ProxySession
) -> None:
    """The manager's server sends a response's head with its body (``edge._OneWriteResponse``);
    a ``100 Continue`` must still go out alone, at once, or the client never sends its body."""
    host, port = harness.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        token = session.auth["Authorization"]
        writer.write(
            f"POST /session/{session.id}/observe HTTP/1.1\r\nhost: {host}\r\n"
            f"authorization: {token}\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n".encode()
        )
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        assert interim.startswith(b"HTTP/1.1 100 ")
        writer.write(b"hello")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        assert head.startswith(b"HTTP/1.1 200 ")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        assert b'"body":"hello"' in (await reader.readexactly(length)).replace(b" ", b"")
    finally:
        writer.close()


async def test_pipelined_requests_are_answered_in_order_and_connection_close_is_kept(
    harness: ProxyHarness, session: ProxySession
) -> None:
    """Answers are written straight on the server's request cycle (``edge.sent_whole``):
    pipelined requests on one socket still get their answers in order, and a client's
    ``Connection: close`` still ends the connection after its answer."""
    host, port = harness.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    token = session.auth["Authorization"]

    def request(body: str, extra: str = "") -> bytes:
        return (
            f"POST /session/{session.id}/observe HTTP/1.1\r\nhost: {host}\r\n"
            f"authorization: {token}\r\ncontent-length: {len(body)}\r\n{extra}\r\n{body}"
        ).encode()

    async def answer() -> tuple[bytes, bytes]:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        return head, (await reader.readexactly(length)).replace(b" ", b"")

    try:
        writer.write(request("one") + request("two") + request("three", "connection: close\r\n"))
        for body in (b"one", b"two", b"three"):
            head, content = await answer()
            assert head.startswith(b"HTTP/1.1 200 ")
            assert b'"body":"%s"' % body in content
        assert b"connection: close" in head.lower()
        assert await asyncio.wait_for(reader.read(), timeout=10) == b""  # closed by the manager
    finally:
        writer.close()
