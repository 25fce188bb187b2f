"""Finding 5: tokens never reach a log line, and a leaked token can be rotated.

The manager's uvicorn logged ``"WebSocket /session/<id>/ws?token=<token>" [accepted]`` in full
(at INFO, with the access log off). Now every line passes a redaction filter, and
``POST /session/<id>/token`` replaces a session's token: the old one is refused at once, on every
replica (each caches routes with the token hash).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support.manager import (
    ADMIN,
    ADMIN_TOKEN,
    Manager,
    ManagerProcessFactory,
    SettingsFactory,
    StartManager,
    auth,
)


async def _ping(ws: ClientConnection) -> str:
    await ws.send(json.dumps({"type": "ping", "payload": {}}))
    reply: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
    return str(reply["type"])


async def _ws_refusal(url: str, **options: Any) -> int:
    """The close code a refused WebSocket gets (the manager accepts, then closes 4xxx)."""
    async with connect(url, proxy=None, open_timeout=10, **options) as ws:
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 10)
    assert info.value.rcvd is not None
    return info.value.rcvd.code


def _ws_url(manager: Manager, session: dict[str, Any], token: str | None = None) -> str:
    url = f"{manager.ws_url}/session/{session['session_id']}/ws"
    return f"{url}?token={token}" if token else url


async def _rotate(manager: Manager, session: dict[str, Any], token: str) -> str:
    reply = await manager.client.post(
        f"/session/{session['session_id']}/token", headers={"Authorization": f"Bearer {token}"}
    )
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    assert body["session_id"] == session["session_id"]
    assert body["token"] != token
    return str(body["token"])


async def _stm_status(manager: Manager, session: dict[str, Any], token: str) -> int:
    reply = await manager.client.get(
        f"/session/{session['session_id']}/stm", headers={"Authorization": f"Bearer {token}"}
    )
    return reply.status_code


# -- no token in any log line ---------------------------------------------------------------------


@pytest.mark.logs_secrets  # its own client's lines quote the secrets it sends on purpose
async def test_no_token_appears_in_any_log_line_of_a_manager_run(
    manager_process: ManagerProcessFactory, make_settings: SettingsFactory, tmp_path: Path
) -> None:
    process = manager_process(make_settings(reconcile_interval_s=0.5))
    process.log_level = "DEBUG"  # every line uvicorn, httpx and the manager can write
    manager = await process.start()
    secrets = [ADMIN_TOKEN]
    try:
        session = await manager.create()
        other = await manager.create(user_id="bob")
        secrets += [session["token"], other["token"]]
        sid = session["session_id"]
        # HTTP with Authorization; credentials in a proxied query string.
        observed = await manager.client.post(
            f"/session/{sid}/observe", json={"strings": ["a"]}, headers=auth(session)
        )
        assert observed.status_code == 200
        bogus = ["query-secret-0123456789abcdef", "api-key-secret-0123456789abcdef"]
        secrets += bogus
        await manager.client.get(
            f"/session/{sid}/stm?token={bogus[0]}&api_key={bogus[1]}", headers=auth(session)
        )
        # WebSocket with ?token= (accepted), and with a wrong one (refused).
        async with connect(_ws_url(manager, session, session["token"]), proxy=None) as ws:
            assert await _ping(ws) == "pong"
        wrong = "wrong-token-0123456789abcdefghijkl"
        secrets.append(wrong)
        assert await _ws_refusal(_ws_url(manager, session, wrong)) == 4401
        # Rotation: the new token is used over HTTP and WebSocket too.
        new = await _rotate(manager, session, session["token"])
        secrets.append(new)
        assert await _stm_status(manager, session, session["token"]) == 401
        async with connect(_ws_url(manager, session, new), proxy=None) as ws:
            assert await _ping(ws) == "pong"
        header = {"Authorization": f"Bearer {new}"}
        async with connect(_ws_url(manager, session), additional_headers=header, proxy=None) as ws:
            assert await _ping(ws) == "pong"
        await manager.client.get("/admin/sessions", headers=ADMIN)
        await manager.client.get("/admin/stats", headers={"Authorization": f"Bearer {wrong}"})
        processor_logs = "".join(
            path.read_text(errors="replace")
            for path in (Path(process.settings.data_dir) / "processors").glob("*.log")
        )
        deleted = await manager.client.delete(
            f"/session/{sid}", headers={"Authorization": f"Bearer {new}"}
        )
        assert deleted.status_code == 204
    finally:
        await manager.end_all()
        await manager.aclose()
        process.stop()
    log = process.log_path.read_text(errors="replace")
    # The line that used to carry the token is there, redacted: the scan looked at it.
    assert f"/session/{sid}/ws?token=[REDACTED]" in log
    assert processor_logs
    for secret in secrets:
        assert secret not in log
        assert secret not in processor_logs


# -- rotation --------------------------------------------------------------------------------------


async def test_a_rotated_token_is_refused_at_once_over_http_and_websocket(manager: Manager) -> None:
    session = await manager.create()
    old = session["token"]
    assert await _stm_status(manager, session, old) == 200  # its route is cached now
    async with connect(_ws_url(manager, session, old), proxy=None) as ws:
        new = await _rotate(manager, session, old)
        # An open socket was authorised when it opened; new ones need the new token.
        assert await _ping(ws) == "pong"
    assert await _stm_status(manager, session, old) == 401
    assert await _stm_status(manager, session, new) == 200
    base = f"/session/{session['session_id']}"
    old_auth = {"Authorization": f"Bearer {old}"}
    assert (await manager.client.get(base, headers=old_auth)).status_code == 401
    assert (await manager.client.post(f"{base}/keepalive", headers=old_auth)).status_code == 401
    assert (await manager.client.post(f"{base}/token", headers=old_auth)).status_code == 401
    assert await _ws_refusal(_ws_url(manager, session, old)) == 4401
    async with connect(_ws_url(manager, session, new), proxy=None) as ws:
        assert await _ping(ws) == "pong"
    header = {"Authorization": f"Bearer {new}"}
    async with connect(_ws_url(manager, session), additional_headers=header, proxy=None) as ws:
        assert await _ping(ws) == "pong"


async def test_rotation_on_one_replica_voids_the_token_on_the_others(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    settings = make_settings()
    first, second = await start_manager(settings), await start_manager(settings)
    session = await first.create()
    old = session["token"]
    assert await _stm_status(second, session, old) == 200  # cached on the second replica
    assert await _stm_status(second, session, old) == 200
    new = await _rotate(first, session, old)
    assert await _stm_status(second, session, old) == 401
    assert await _stm_status(second, session, new) == 200
    assert await _ws_refusal(_ws_url(second, session, old)) == 4401


@pytest.mark.parametrize("authorization", [None, "Bearer not-the-token", "Basic abc"])
async def test_rotation_needs_the_current_token(
    manager: Manager, authorization: str | None
) -> None:
    session = await manager.create()
    headers = {"Authorization": authorization} if authorization else {}
    reply = await manager.client.post(f"/session/{session['session_id']}/token", headers=headers)
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "UNAUTHORIZED"
    assert await _stm_status(manager, session, session["token"]) == 200


async def test_two_rotations_with_the_same_token_give_one_new_token(manager: Manager) -> None:
    session = await manager.create()
    url = f"/session/{session['session_id']}/token"
    replies = await asyncio.gather(
        *(manager.client.post(url, headers=auth(session)) for _ in range(8))
    )
    winners = [r.json()["token"] for r in replies if r.status_code == 200]
    assert len(winners) == 1
    assert {r.status_code for r in replies} == {200, 401}
    assert await _stm_status(manager, session, winners[0]) == 200


async def test_an_ended_session_cannot_be_rotated(manager: Manager) -> None:
    session = await manager.create()
    base = f"/session/{session['session_id']}"
    assert (await manager.client.delete(base, headers=auth(session))).status_code == 204
    reply = await manager.client.post(f"{base}/token", headers=auth(session))
    assert reply.status_code == 410


async def test_without_session_tokens_there_is_nothing_to_rotate(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    manager = await start_manager(make_settings(session_auth="none"))
    session = await manager.create()
    reply = await manager.client.post(f"/session/{session['session_id']}/token")
    assert reply.status_code == 409
    assert "SESSION_AUTH=none" in reply.json()["error"]["message"]
