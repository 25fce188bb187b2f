"""A session's token reaches its processor's client routes, never the ones only the manager calls.

The proxy adds the processor's secret to whatever it forwards, so before this a token holder
could ``POST /fence`` its own processor (every later request waited for a restore that never
came, then 503), or push knowledge into it with ``/knowledge/sync``. Those paths are now
answered 404 by the proxy itself, however they are spelled, and nothing reaches the processor.
"""

from __future__ import annotations

from typing import Any

import pytest

from session_manager.api.proxy import proxy_request
from session_manager.proxy.manager_only import MANAGER_ONLY_PATHS, is_manager_only
from session_manager.sessions import Sessions
from tests.support.manager import Manager, auth

_REFUSED = [
    ("POST", "/fence"),
    ("DELETE", "/fence"),
    ("POST", "/claim"),
    ("POST", "/knowledge/sync"),
    ("POST", "/knowledge/reload"),
    # Spellings the processor routes to the same handlers.
    ("POST", "/fence/"),
    ("POST", "//fence"),
    ("POST", "/%66ence"),
    ("POST", "/knowledge%2Fsync"),
    ("POST", "/stm/../fence"),
    ("POST", "/knowledge/./reload"),
]


async def _stm(manager: Manager, session: dict[str, Any]) -> Any:
    reply = await manager.client.get(f"/session/{session['session_id']}/stm", headers=auth(session))
    assert reply.status_code == 200, reply.text
    return reply.json()["stm"]


async def test_a_token_holder_gets_404_for_every_manager_only_route(manager: Manager) -> None:
    session = await manager.create()
    sid = session["session_id"]
    observed = await manager.client.post(
        f"/session/{sid}/observe", json={"strings": ["kept"]}, headers=auth(session)
    )
    assert observed.status_code == 200, observed.text
    for method, path in _REFUSED:
        reply = await manager.client.request(
            method,
            f"/session/{sid}{path}",
            json={"env": {}, "since": 0, "ops": [], "drain": True},
            headers=auth(session),
        )
        assert reply.status_code == 404, (method, path, reply.text)
        body = reply.json()
        assert body["status"] == 404
        assert body["error"]["code"] == "NOT_FOUND", (method, path)
    # Nothing reached the processor: not fenced (a fenced one would hold every write until a
    # restore that never comes), its state as it was.
    assert await _stm(manager, session) == [["kept"]]
    again = await manager.client.post(
        f"/session/{sid}/observe", json={"strings": ["next"]}, headers=auth(session)
    )
    assert again.status_code == 200, again.text
    assert await _stm(manager, session) == [["kept"], ["next"]]


async def test_the_managers_own_calls_still_reach_those_routes(manager: Manager) -> None:
    session = await manager.create()
    sid = session["session_id"]
    state = manager.app.state
    scope: Any = {
        "type": "http",
        "method": "POST",
        "headers": [(b"authorization", f"Bearer {session['token']}".encode())],
        "query_string": b"",
        "path": f"/session/{sid}/knowledge/reload",
        "raw_path": f"/session/{sid}/knowledge/reload".encode(),
    }

    async def empty() -> Any:
        yield b""

    reload = await proxy_request(state, scope, empty(), sid, manager=True)
    assert reload.status == 200
    # Hibernation fences the processor through its own client, and the restore follows.
    sessions: Sessions = state.sessions
    assert await sessions.hibernate(sid)
    assert await _stm(manager, session) == []


@pytest.mark.parametrize(
    ("path", "refused"),
    [
        ("/fence", True),
        ("/claim/x", True),
        ("/knowledge/sync", True),
        ("/observe", False),
        ("/knowledge", False),
        ("/fenced", False),
        ("/gene/knowledge", False),
        ("/pattern/claim", False),
    ],
)
def test_only_the_listed_routes_and_below_are_refused(path: str, refused: bool) -> None:
    assert is_manager_only(path) is refused
    assert {"/fence", "/claim", "/knowledge/sync", "/knowledge/reload"} <= MANAGER_ONLY_PATHS
