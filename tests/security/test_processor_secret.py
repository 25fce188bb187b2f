"""Finding 4: processors accept only the manager that started them.

With the process backend a processor listens on ``127.0.0.1:<port>``: any local process, or a
browser page (a blind cross-site POST, or DNS rebinding with ``Host: evil``), could read or
wipe a session's processor without its token. Now each processor the manager starts gets a
secret (``PROCESSOR_SECRET``) that it requires on every request but ``GET /health``, and it
answers only the ``Host`` names it is reached by. The manager sends the secret on every call
and proxied request; a client never learns it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from processor_image.service.app import serving_app
from processor_image.service.config import ServiceConfig
from processor_image.service.guard import ManagerOnly, host_name
from session_manager.processor_secrets import SECRET_HEADER, ProcessorSecrets
from session_manager.sessions import Sessions
from tests.support.manager import Manager, auth, observed


async def _endpoint_and_secret(manager: Manager, session: dict[str, Any]) -> tuple[str, str]:
    """The processor's own address and the secret the manager derives for it."""
    record = await manager.app.state.store.get(session["session_id"])
    assert record is not None
    assert record.endpoint
    key = manager.app.state.settings.processor_secret_key
    assert key, "the manager runs with a processor key"
    return record.endpoint, ProcessorSecrets(key).for_processor(record.processor_id)


async def _ws_ping(manager: Manager, session: dict[str, Any]) -> str:
    url = f"{manager.ws_url}/session/{session['session_id']}/ws?token={session['token']}"
    async with connect(url, proxy=None, open_timeout=10) as ws:
        await ws.send(json.dumps({"type": "ping", "payload": {}}))
        reply: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
    return str(reply["type"])


async def test_a_processor_refuses_every_request_without_its_secret(manager: Manager) -> None:
    session = await manager.create()
    await observed(manager, session, "kept")
    endpoint, secret = await _endpoint_and_secret(manager, session)
    async with httpx.AsyncClient(base_url=endpoint, trust_env=False, timeout=10) as direct:
        assert (await direct.get("/health")).status_code == 200  # probes need no secret
        for method, path in [
            ("GET", "/stm"),
            ("GET", "/state"),
            ("POST", "/clear-all"),
            ("POST", "/observe"),
            ("POST", "/fence"),
        ]:
            refused = await direct.request(method, path, json={"strings": ["x"]})
            assert refused.status_code == 401, (method, path, refused.text)
            assert refused.json()["error"]["code"] == "UNAUTHORIZED"
        wrong = await direct.get("/stm", headers={SECRET_HEADER: "0" * len(secret)})
        assert wrong.status_code == 401
        # A blind cross-site POST (a form: text/plain, no custom header) gets nowhere either.
        form = await direct.post("/clear-all", content=b"x", headers={"content-type": "text/plain"})
        assert form.status_code == 401
        mine = await direct.get("/stm", headers={SECRET_HEADER: secret})
        assert mine.status_code == 200
        assert mine.json()["stm"] == [["kept"]]  # nothing was wiped
    ws_url = "ws" + endpoint.removeprefix("http") + "/ws"
    with pytest.raises(InvalidStatus) as refused_ws:
        async with connect(ws_url, proxy=None, open_timeout=10):
            pass
    assert 400 <= refused_ws.value.response.status_code < 500


async def test_a_processor_refuses_a_foreign_host_even_with_its_secret(manager: Manager) -> None:
    session = await manager.create()
    endpoint, secret = await _endpoint_and_secret(manager, session)
    port = endpoint.rsplit(":", 1)[1]
    async with httpx.AsyncClient(base_url=endpoint, trust_env=False, timeout=10) as direct:
        for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1.evil.example:{port}"):
            for path in ("/stm", "/health"):
                reply = await direct.get(path, headers={"Host": host, SECRET_HEADER: secret})
                assert reply.status_code == 421, (host, path)
        for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
            reply = await direct.get("/stm", headers={"Host": host, SECRET_HEADER: secret})
            assert reply.status_code == 200, host


async def test_the_proxy_still_reaches_the_processor_over_http_and_websocket(
    manager: Manager,
) -> None:
    session = await manager.create()
    await observed(manager, session, "a")
    stm = await manager.client.get(f"/session/{session['session_id']}/stm", headers=auth(session))
    assert stm.status_code == 200
    assert stm.json()["stm"] == [["a"]]
    assert await _ws_ping(manager, session) == "pong"
    # A client cannot smuggle a secret header through (it would be a guess anyway).
    forged = await manager.client.get(
        f"/session/{session['session_id']}/stm",
        headers={**auth(session), SECRET_HEADER: "forged"},
    )
    assert forged.status_code == 200


async def test_hibernate_and_restore_keep_working_with_the_secret(manager: Manager) -> None:
    session = await manager.create()
    sid = session["session_id"]
    await observed(manager, session, "before")
    sessions: Sessions = manager.app.state.sessions
    assert await sessions.hibernate(sid)
    stm = await manager.client.get(f"/session/{sid}/stm", headers=auth(session))  # restores
    assert stm.status_code == 200
    assert stm.json()["stm"] == [["before"]]
    assert await _ws_ping(manager, session) == "pong"
    # The restored processor is guarded too.
    endpoint, _ = await _endpoint_and_secret(manager, session)
    async with httpx.AsyncClient(base_url=endpoint, trust_env=False, timeout=10) as direct:
        assert (await direct.get("/stm")).status_code == 401
    view = await manager.client.get(
        f"/session/{sid}", params={"live_genes": "true"}, headers=auth(session)
    )
    assert view.status_code == 200


def test_a_processor_started_without_a_secret_stays_open() -> None:
    """Standalone ``docker run`` and static (gateway) processors keep working unchanged."""
    open_app = serving_app(ServiceConfig(processor_id="p"))
    guarded = serving_app(ServiceConfig(processor_id="p", secret="s" * 64))
    assert not isinstance(open_app, ManagerOnly)
    assert isinstance(guarded, ManagerOnly)


@pytest.mark.parametrize(
    ("host", "name"),
    [
        (b"127.0.0.1:8000", "127.0.0.1"),
        (b"LocalHost:1", "localhost"),
        (b"[::1]:8000", "::1"),
        (b"kato-abc:8000", "kato-abc"),
        (b"evil.example", "evil.example"),
    ],
)
def test_host_names_are_compared_without_port_and_case(host: bytes, name: str) -> None:
    assert host_name(host) == name
