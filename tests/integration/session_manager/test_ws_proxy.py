"""The WebSocket proxy, ``WS /session/{id}/ws``, against real servers on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.integration.session_manager.proxy_fixtures import (
    ProxyHarness,
    ProxySession,
    echo_manager,
)
from tests.support.manager import Manager, SettingsFactory, StartManager, auth
from tests.support.net import free_port


@pytest.fixture(name="harness")
async def fx_harness(
    start_manager: StartManager, make_settings: SettingsFactory
) -> AsyncIterator[ProxyHarness]:
    async with echo_manager(start_manager, make_settings) as harness:
        yield harness


@pytest.fixture(name="session")
async def fx_session(harness: ProxyHarness) -> ProxySession:
    return await harness.open_session()


def ws_connect(
    harness: ProxyHarness,
    session_id: str,
    *,
    token: str | None = None,
    query: str = "",
    headers: dict[str, str] | None = None,
    subprotocols: list[str] | None = None,
) -> connect:
    url = f"{harness.ws_url}/session/{session_id}/ws"
    params = "&".join(p for p in (f"token={token}" if token else "", query) if p)
    return connect(
        f"{url}?{params}" if params else url,
        additional_headers=headers,
        subprotocols=subprotocols,  # type: ignore[arg-type]
        proxy=None,
        open_timeout=5,
    )


async def closed_by_server(ws: ClientConnection) -> tuple[int, str]:
    """Wait for the server's close frame and return its code and reason."""
    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(ws.recv(), timeout=5)
    assert info.value.rcvd is not None
    return info.value.rcvd.code, info.value.rcvd.reason


async def test_text_and_binary_frames_go_both_ways_unchanged(
    harness: ProxyHarness, session: ProxySession
) -> None:
    async with ws_connect(harness, session.id, headers=session.auth) as ws:
        await ws.send('{"type": "ping"}')
        assert await ws.recv() == '{"type": "ping"}'
        await ws.send(b"\x00\xffbinary")
        assert await ws.recv() == b"\x00\xffbinary"
        for i in range(50):
            await ws.send(f"frame {i}")
        assert [await ws.recv() for _ in range(50)] == [f"frame {i}" for i in range(50)]


async def test_messages_bigger_than_the_library_default_pass_both_ways(
    harness: ProxyHarness, session: ProxySession
) -> None:
    big = bytes(range(256)) * (3 * 4096)  # 3 MiB, over websockets' 1 MiB default
    url = f"{harness.ws_url}/session/{session.id}/ws?token={session.token}"
    async with connect(url, proxy=None, max_size=None) as ws:
        await ws.send(big)
        assert await ws.recv() == big
        await ws.send(big.hex()[: 2 * 1024 * 1024])
        assert await ws.recv() == big.hex()[: 2 * 1024 * 1024]


async def test_token_in_the_query_is_accepted_and_not_passed_on(
    harness: ProxyHarness, session: ProxySession
) -> None:
    async with ws_connect(harness, session.id, token=session.token, query="mode=fast") as ws:
        await ws.send("headers")
        seen = json.loads(await ws.recv())
    assert seen["query"] == "mode=fast"
    assert "authorization" not in seen["headers"]
    assert seen["headers"]["x-request-id"]


async def test_header_token_is_not_passed_on_and_request_id_is(
    harness: ProxyHarness, session: ProxySession
) -> None:
    headers = {**session.auth, "X-Request-ID": "ws-trace-1"}
    async with ws_connect(harness, session.id, headers=headers) as ws:
        await ws.send("headers")
        seen = json.loads(await ws.recv())
    assert "authorization" not in seen["headers"]
    assert seen["headers"]["x-request-id"] == "ws-trace-1"


async def test_request_id_follows_the_http_rule_on_the_handshake(
    harness: ProxyHarness, session: ProxySession
) -> None:
    """Kept when a plain token, replaced otherwise; the client and processor see the same id."""
    for given, kept in (("ws-trace-2", True), ("a b{}", False)):
        headers = {**session.auth, "X-Request-ID": given}
        async with ws_connect(harness, session.id, headers=headers) as ws:
            assert ws.response is not None
            returned = ws.response.headers["X-Request-ID"]
            await ws.send("headers")
            seen = json.loads(await ws.recv())
        assert seen["headers"]["x-request-id"] == returned
        if kept:
            assert returned == given
        else:
            assert len(returned) == 32


async def test_subprotocol_is_negotiated_with_the_processor(
    harness: ProxyHarness, session: ProxySession
) -> None:
    async with ws_connect(
        harness, session.id, headers=session.auth, subprotocols=["kato.v1", "other"]
    ) as ws:
        assert ws.subprotocol == "kato.v1"


async def test_processor_close_code_and_reason_reach_the_client(
    harness: ProxyHarness, session: ProxySession
) -> None:
    async with ws_connect(harness, session.id, headers=session.auth) as ws:
        await ws.send("close:4321:processor says bye")
        assert await closed_by_server(ws) == (4321, "processor says bye")


async def test_client_close_code_and_reason_reach_the_processor(
    harness: ProxyHarness, session: ProxySession
) -> None:
    async with ws_connect(harness, session.id, headers=session.auth) as ws:
        await ws.send("hello")
        await ws.recv()
        await ws.close(4100, "client says bye")
    for _ in range(100):
        if harness.upstream.closes:
            break
        await asyncio.sleep(0.02)
    assert harness.upstream.closes == [(4100, "client says bye")]


async def test_client_vanishing_closes_the_processor_socket(
    harness: ProxyHarness, session: ProxySession
) -> None:
    ws = await ws_connect(harness, session.id, headers=session.auth)
    await ws.send("hello")
    await ws.recv()
    ws.transport.abort()  # no close frame: the TCP connection just drops
    for _ in range(100):
        if harness.upstream.closes:
            break
        await asyncio.sleep(0.02)
    assert len(harness.upstream.closes) == 1
    assert harness.upstream.closes[0][0] in (1000, 1001)


@pytest.mark.parametrize(
    ("token", "code", "reason"),
    [("wrong", 4401, "UNAUTHORIZED"), (None, 4401, "UNAUTHORIZED")],
)
async def test_bad_token_closes_with_4401(
    harness: ProxyHarness, session: ProxySession, token: str | None, code: int, reason: str
) -> None:
    async with ws_connect(harness, session.id, token=token) as ws:
        assert await closed_by_server(ws) == (code, reason)
    assert harness.upstream.closes == []


async def test_unknown_session_closes_with_4404(harness: ProxyHarness) -> None:
    async with ws_connect(harness, "no-such-session", token="x") as ws:
        assert await closed_by_server(ws) == (4404, "SESSION_NOT_FOUND")


async def test_processor_that_cannot_be_reached_closes_with_4502(
    harness: ProxyHarness,
) -> None:
    session = await harness.open_session(endpoint=f"http://127.0.0.1:{free_port()}")
    async with ws_connect(harness, session.id, headers=session.auth) as ws:
        assert await closed_by_server(ws) == (4502, "PROCESSOR_UNAVAILABLE")


async def test_idle_deadline_moves_on_open_then_at_most_once_a_second(
    harness: ProxyHarness, session: ProxySession
) -> None:
    opened_at = harness.clock.now_ms()
    async with ws_connect(harness, session.id, headers=session.auth) as ws:
        assert await harness.last_activity_ms(session.id) == opened_at
        harness.clock.advance(0.5)
        await ws.send("within the second")
        await ws.recv()
        assert await harness.last_activity_ms(session.id) == opened_at
        harness.clock.advance(0.5)
        at_one_second = harness.clock.now_ms()
        await ws.send("a second later")
        await ws.recv()
        assert await harness.last_activity_ms(session.id) == at_one_second
        harness.clock.advance(0.2)
        await ws.send("soon after")
        await ws.recv()
        assert await harness.last_activity_ms(session.id) == at_one_second


async def test_deleted_session_closes_with_4410(
    harness: ProxyHarness, session: ProxySession
) -> None:
    deleted = await harness.manager.client.delete(f"/session/{session.id}", headers=session.auth)
    assert deleted.status_code == 204
    async with ws_connect(harness, session.id, headers=session.auth) as ws:
        assert await closed_by_server(ws) == (4410, "SESSION_EXPIRED")


# -- real processors (python -m processor_image through the process backend) ----------------------


async def call(ws: ClientConnection, kind: str, payload: dict[str, Any] | None = None) -> Any:
    await ws.send(json.dumps({"type": kind, "payload": payload or {}}))
    return json.loads(await asyncio.wait_for(ws.recv(), 10))


async def test_seed_usage_pattern_over_the_ws_proxy_with_a_header_token(manager: Manager) -> None:
    session = await manager.create(genes={"recall_threshold": 0.1})
    url = f"{manager.ws_url}/session/{session['session_id']}/ws"
    async with connect(url, additional_headers=auth(session), proxy=None) as ws:
        assert (await call(ws, "ping"))["type"] == "pong"
        for symbol in ("hello", "world", "test"):
            observed = await call(
                ws, "observe", {"strings": [symbol], "vectors": [], "emotives": {}}
            )
            assert observed["data"]["status"] == "okay"
        assert (await call(ws, "get_stm"))["data"]["stm"] == [["hello"], ["world"], ["test"]]
        learned = (await call(ws, "learn"))["data"]["pattern_name"]
        assert learned.startswith("PTRN|")
        await call(ws, "clear_stm")
        for symbol in ("hello", "world"):
            await call(ws, "observe", {"strings": [symbol], "vectors": [], "emotives": {}})
        predictions = (await call(ws, "get_predictions"))["data"]["predictions"]
        assert [(p["name"], p["future"]) for p in predictions] == [(learned, [["test"]])]
        assert (await call(ws, "no_such_type"))["type"] == "error"


async def test_a_bad_frame_is_answered_through_the_proxy_and_the_socket_stays_open(
    manager: Manager,
) -> None:
    session = await manager.create()
    url = f"{manager.ws_url}/session/{session['session_id']}/ws?token={session['token']}"
    async with connect(url, proxy=None) as ws:
        await ws.send("this is not json")
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert reply["type"] == "error"
        assert reply["data"]["message"].startswith("Frame is not valid JSON")
        assert (await call(ws, "ping"))["type"] == "pong"


async def test_genes_over_the_ws_proxy_are_validated_like_create(manager: Manager) -> None:
    session = await manager.create()
    url = f"{manager.ws_url}/session/{session['session_id']}/ws?token={session['token']}"
    async with connect(url, proxy=None) as ws:
        refused = await call(ws, "update_genes", {"genes": {"persistence": 9, "bogus": 1}})
        assert refused == {"type": "error", "data": {"message": "Unknown gene: bogus"}}
        refused = await call(ws, "update_genes", {"genes": {"recall_threshold": 7}})
        assert refused["data"]["message"].startswith("Invalid value for gene recall_threshold")
    reply = await manager.client.get(
        f"/session/{session['session_id']}/gene/persistence", headers=auth(session)
    )
    assert reply.json()["gene_value"] == 5


async def test_processor_dying_mid_socket_closes_the_client_with_1014(manager: Manager) -> None:
    session = await manager.create()
    record = await manager.client.get(
        f"/admin/sessions/{session['session_id']}", headers=manager.admin
    )
    url = f"{manager.ws_url}/session/{session['session_id']}/ws?token={session['token']}"
    async with connect(url, proxy=None) as ws:
        assert (await call(ws, "ping"))["type"] == "pong"
        os.killpg(int(record.json()["ref"]), signal.SIGKILL)
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 10)
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1014


async def test_processor_message_over_the_body_limit_closes_with_1009(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    async with echo_manager(start_manager, make_settings, max_proxy_body_bytes=65536) as harness:
        session = await harness.open_session()
        async with ws_connect(harness, session.id, token=session.token) as ws:
            await ws.send(b"x" * 65536)
            assert await ws.recv() == b"x" * 65536
            await ws.send(b"x" * 65537)  # echoed back: too big for the proxy to take
            code, _ = await closed_by_server(ws)
    assert code == 1009
