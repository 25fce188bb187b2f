"""The proxy's lane (``api.proxy_lane``): the ASGI path's answers, from callbacks.

Against the echo upstream on loopback and real uvicorn, with raw sockets so the test sees
exactly the bytes a client gets (and controls how a request arrives). Every test runs twice:
with the native wire work (``proxy.wire``'s core) and with httptools and Python alone.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from session_manager import edge
from session_manager.app import create_app
from session_manager.proxy import http1, wire
from session_manager.serving import server_config
from tests.integration.session_manager.proxy_fixtures import (
    EchoBackend,
    EchoUpstream,
    ProxyHarness,
    ProxySession,
    echo_manager,
)
from tests.support.manager import ADMIN, Manager, SettingsFactory, StartManager
from tests.support.net import serve, serving
from tests.support.timing import ManualClock


@pytest.fixture(autouse=True, params=["native", "python"])
def wire_core(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which wire work serves: the core's (where built) or httptools' and Python's."""
    if request.param == "native" and wire.parse_request is None:
        pytest.skip("the wire core is not built here")
    if request.param == "python":
        monkeypatch.setattr(edge, "parse_request", None)
        monkeypatch.setattr(http1, "parse_response", None)
        monkeypatch.setattr(wire, "_wire", None)
    return str(request.param)


@pytest.fixture(name="harness")
async def fx_harness(
    start_manager: StartManager, make_settings: SettingsFactory
) -> AsyncIterator[ProxyHarness]:
    async with echo_manager(start_manager, make_settings, proxy_read_timeout_s=2.0) as harness:
        yield harness


class Raw:
    """One keep-alive client connection, bytes in and out."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, base_url: str) -> Raw:
        host, port = base_url.removeprefix("http://").split(":")
        return cls(*await asyncio.open_connection(host, int(port)))

    async def send(self, *parts: bytes, pause_s: float = 0.0) -> None:
        for part in parts:
            self.writer.write(part)
            await self.writer.drain()
            if pause_s:
                await asyncio.sleep(pause_s)

    async def response(self) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
        """Status line, headers (lowercased names), body of the next response."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
        status, *lines = head[:-4].split(b"\r\n")
        headers = [
            (name.strip().lower(), value.strip())
            for name, _, value in (line.partition(b":") for line in lines)
        ]
        length = int(next(v for n, v in headers if n == b"content-length"))
        body = await asyncio.wait_for(self.reader.readexactly(length), 10)
        return status, headers, body

    def close(self) -> None:
        self.writer.close()


async def opened(harness: ProxyHarness) -> tuple[ProxySession, Raw]:
    """A session whose route the manager has in memory (its first request put it there: the
    lane never resolves one), and a connection to it."""
    session = await harness.open_session()
    raw = await Raw.open(harness.base_url)
    await raw.send(request("GET", session.id, "/warm", session.token))
    assert (await raw.response())[0] == b"HTTP/1.1 200 OK"
    return session, raw


def counts(harness: ProxyHarness) -> tuple[int, int]:
    lane = harness.app.state.proxy_lane
    return lane.answered, lane.handed_over


def request(
    method: str, session: str, path: str, token: str, body: bytes = b"", rid: str = "rid-1"
) -> bytes:
    return (
        f"{method} /session/{session}{path} HTTP/1.1\r\nhost: t\r\n"
        f"authorization: Bearer {token}\r\nx-request-id: {rid}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body


def comparable(answer: tuple[bytes, list[tuple[bytes, bytes]], bytes]) -> tuple[object, ...]:
    """An answer without what differs between two sessions (date, secrets, ids)."""
    status, headers, body = answer
    seen = json.loads(body)
    return (
        status,
        [(n, v) for n, v in headers if n not in (b"date", b"content-length")],
        seen["method"],
        seen["path"],
        seen["query"],
        seen["body"],
        [name for name, _ in seen["headers"]],
        [(n, v) for n, v in seen["headers"] if not n.startswith(("x-kato-", "host"))],
    )


async def test_lane_and_asgi_path_answer_the_same(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    answers = {}
    for lane in ("on", "off"):
        async with echo_manager(start_manager, make_settings, proxy_lane=lane) as harness:
            proxy_lane = getattr(harness.app.state, "proxy_lane", None)
            assert (proxy_lane is not None) == (lane == "on")
            session, raw = await opened(harness)
            try:
                got = []
                for method, body in (("GET", b""), ("POST", b'{"strings": ["a"]}')):
                    await raw.send(request(method, session.id, "/observe?x=1", session.token, body))
                    got.append(comparable(await raw.response()))
                answers[lane] = got
            finally:
                raw.close()
            metrics = (await harness.manager.client.get("/metrics", headers=ADMIN)).text
            if lane == "on":
                # The GET is answered by the lane; the POST (the echo numbers nothing, so it
                # is journaled after its answer) is sent by the lane, finished by the ASGI path.
                assert counts(harness) == (1, 1)
                assert 'kato_proxy_lane_requests_total{outcome="answered"} 1.0' in metrics
                assert 'kato_proxy_lane_requests_total{outcome="handed_over"} 1.0' in metrics
            else:
                assert "kato_proxy_lane_requests" not in metrics
    assert answers["on"] == answers["off"]


async def test_pipelined_requests_are_answered_in_order(harness: ProxyHarness) -> None:
    session, raw = await opened(harness)
    try:
        await raw.send(
            request("GET", session.id, "/first", session.token, rid="one")
            + request("POST", session.id, "/second", session.token, b"{}", rid="two")
            + request("GET", session.id, "/third", session.token, rid="three")
        )
        paths = []
        for rid in ("one", "two", "three"):
            status, headers, body = await raw.response()
            assert status == b"HTTP/1.1 200 OK"
            assert (b"x-request-id", rid.encode()) in headers
            paths.append(json.loads(body)["path"])
        assert paths == ["/first", "/second", "/third"]
    finally:
        raw.close()
    assert counts(harness)[0] >= 1, counts(harness)  # the first at least: the others wait


async def test_requests_sent_while_the_lane_holds_one_wait_their_turn(
    harness: ProxyHarness,
) -> None:
    """Bytes that come while the lane's request is at the processor (reading is paused) are
    parsed after its answer, a request cut across two packets included."""
    session, raw = await opened(harness)
    second = request("POST", session.id, "/second", session.token, b'{"n": 2}', rid="two")
    try:
        await raw.send(request("GET", session.id, "/slow?s=0.3", session.token, rid="one"))
        await asyncio.sleep(0.1)  # the first is at the processor
        await raw.send(second[:20])
        await asyncio.sleep(0.05)
        await raw.send(
            second[20:] + request("GET", session.id, "/third", session.token, rid="three")
        )
        seen = []
        for rid in ("one", "two", "three"):
            status, headers, body = await raw.response()
            assert status == b"HTTP/1.1 200 OK"
            assert (b"x-request-id", rid.encode()) in headers
            seen.append((json.loads(body)["path"], json.loads(body)["body"]))
        assert seen == [("/slow", ""), ("/second", '{"n": 2}'), ("/third", "")]
        # and the connection goes on as before: the lane takes the next one
        answered = counts(harness)[0]
        await raw.send(request("GET", session.id, "/fourth", session.token, rid="four"))
        assert json.loads((await raw.response())[2])["path"] == "/fourth"
    finally:
        raw.close()
    assert counts(harness)[0] == answered + 1


async def test_a_shutdown_lets_the_lanes_request_finish_then_closes(
    make_settings: SettingsFactory,
) -> None:
    """uvicorn closes idle connections at once on shutdown; one whose request the lane holds
    gets its answer first, marked ``connection: close``."""
    upstream = EchoUpstream()
    async with serve(upstream) as upstream_url:
        settings = make_settings()
        app = create_app(settings, backend=EchoBackend(upstream_url), clock=ManualClock())
        async with serving(server_config(app, settings)) as (base_url, server):
            manager = Manager(base_url, app)
            try:
                created = await manager.create(user_id="shutdown")
                session = ProxySession(id=created["session_id"], token=created["token"])
                raw = await Raw.open(base_url)
                await raw.send(request("GET", session.id, "/warm", session.token))
                assert (await raw.response())[0] == b"HTTP/1.1 200 OK"
                await raw.send(request("GET", session.id, "/slow?s=0.5", session.token))
                await asyncio.sleep(0.15)  # at the processor
                server.should_exit = True
                status, headers, body = await raw.response()
                assert status == b"HTTP/1.1 200 OK"
                assert json.loads(body)["path"] == "/slow"
                assert (b"connection", b"close") in headers
                assert await asyncio.wait_for(raw.reader.read(), 5) == b""  # closed
                assert app.state.proxy_lane.answered == 1
            finally:
                await manager.aclose()


async def test_a_request_that_expects_100_continue_goes_to_the_app(
    harness: ProxyHarness,
) -> None:
    session, raw = await opened(harness)
    head = request("POST", session.id, "/observe", session.token, b'{"a": 1}')
    head, _, body = head.partition(b"\r\n\r\n")
    try:
        await raw.send(head + b"\r\nexpect: 100-continue\r\n\r\n")
        interim = await asyncio.wait_for(raw.reader.readuntil(b"\r\n\r\n"), 10)
        assert interim.startswith(b"HTTP/1.1 100")
        await raw.send(body)
        status, _, answer = await raw.response()
    finally:
        raw.close()
    assert status == b"HTTP/1.1 200 OK"
    assert json.loads(answer)["body"] == '{"a": 1}'
    assert counts(harness) == (0, 0)


@pytest.mark.parametrize(("pause_s", "lane_counts"), [(0.005, (0, 1)), (0.3, (0, 0))])
async def test_a_body_in_a_later_packet(
    harness: ProxyHarness, pause_s: float, lane_counts: tuple[int, int]
) -> None:
    """A moment later, the lane still takes it (this POST it sends, the ASGI path finishes);
    much later, the ASGI path has it from the start."""
    session, raw = await opened(harness)
    whole = request("POST", session.id, "/observe", session.token, b'{"strings": ["late"]}')
    head, _, body = whole.partition(b"\r\n\r\n")
    try:
        await raw.send(head + b"\r\n\r\n", body, pause_s=pause_s)
        status, _, answer = await raw.response()
    finally:
        raw.close()
    assert status == b"HTTP/1.1 200 OK"
    assert json.loads(answer)["body"] == '{"strings": ["late"]}'
    assert counts(harness) == lane_counts


async def test_a_big_answer_is_streamed_whole(harness: ProxyHarness) -> None:
    session, raw = await opened(harness)
    try:
        await raw.send(request("GET", session.id, "/big?n=1000000", session.token))
        head = await asyncio.wait_for(raw.reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200 OK")
        received = 0
        while received < 1_000_000:
            chunk = await asyncio.wait_for(raw.reader.read(65536), 10)
            assert chunk, "connection closed mid-answer"
            received += chunk.count(b"x")
        assert received == 1_000_000
    finally:
        raw.close()
    assert counts(harness) == (0, 1)


async def test_a_client_gone_mid_request_gives_its_slot_back(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    async with echo_manager(
        start_manager, make_settings, proxy_max_in_flight_per_session=1
    ) as harness:
        session, raw = await opened(harness)
        await raw.send(request("GET", session.id, "/slow?s=0.3", session.token))
        await asyncio.sleep(0.05)
        raw.close()  # gone before the processor answers
        await asyncio.sleep(0.5)
        raw = await Raw.open(harness.base_url)
        try:
            await raw.send(request("GET", session.id, "/after", session.token))
            status, _, body = await raw.response()
        finally:
            raw.close()
        assert status == b"HTTP/1.1 200 OK", body
        assert counts(harness)[0] == 1  # the one after; the first found nobody to answer


async def test_a_processor_that_does_not_answer_in_time_gives_504(
    harness: ProxyHarness,
) -> None:
    session, raw = await opened(harness)
    try:
        await raw.send(request("GET", session.id, "/slow?s=3", session.token, rid="late-1"))
        status, headers, body = await raw.response()
    finally:
        raw.close()
    assert status.startswith(b"HTTP/1.1 504")
    assert (b"x-request-id", b"late-1") in headers
    assert json.loads(body)["error"]["code"] == "PROCESSOR_TIMEOUT"
    assert counts(harness) == (0, 1)


async def test_a_lane_that_fails_leaves_the_request_to_the_app(
    harness: ProxyHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in the lane is never the client's problem (httptools would answer it 400)."""
    session, raw = await opened(harness)

    def broken(call: object) -> bool:
        raise RuntimeError("lane bug")

    monkeypatch.setattr(harness.app.state.proxy_lane, "start", broken)
    try:
        await raw.send(request("GET", session.id, "/observe", session.token))
        status, _, body = await raw.response()
    finally:
        raw.close()
    assert status == b"HTTP/1.1 200 OK"
    assert json.loads(body)["path"] == "/observe"


async def test_a_lane_that_fails_to_answer_gives_500_and_the_session_goes_on(
    harness: ProxyHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the processor's answer a lane bug cannot wait for a fix: the client gets the
    error JSON, never silence, and the session's next request is served."""
    session, raw = await opened(harness)
    forwarder = harness.app.state.forwarder

    def broken(out: object, conn: object) -> None:
        raise RuntimeError("lane bug")

    try:
        with monkeypatch.context() as patch:
            patch.setattr(forwarder, "conclude_now", broken)
            await raw.send(request("GET", session.id, "/observe", session.token, rid="bug-1"))
            status, headers, body = await raw.response()
        assert status.startswith(b"HTTP/1.1 500")
        assert (b"x-request-id", b"bug-1") in headers
        assert json.loads(body)["error"]["code"] == "INTERNAL_ERROR"
        await raw.send(request("GET", session.id, "/next", session.token))
        status, _, body = await raw.response()
        assert status == b"HTTP/1.1 200 OK"
        assert json.loads(body)["path"] == "/next"
    finally:
        raw.close()
