"""Sessions end to end: real Redis, real processor processes, the manager on a real server."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from session_manager.app import create_app
from session_manager.backends.process import ProcessBackend
from tests.support.manager import Manager, SettingsFactory, StartManager, auth
from tests.support.net import serve
from tests.support.pids import pid_running, processes_of


async def pid_of(manager: Manager, session: dict[str, Any]) -> int:
    reply = await manager.client.get(
        f"/admin/sessions/{session['session_id']}", headers=manager.admin
    )
    return int(reply.json()["ref"])


async def observe(manager: Manager, session: dict[str, Any], *strings: str) -> dict[str, Any]:
    reply = await manager.client.post(
        f"/session/{session['session_id']}/observe",
        json={"strings": list(strings)},
        headers=auth(session),
    )
    assert reply.status_code == 200, reply.text
    result: dict[str, Any] = reply.json()
    return result


async def stm(manager: Manager, session: dict[str, Any]) -> list[list[str]]:
    reply = await manager.client.get(f"/session/{session['session_id']}/stm", headers=auth(session))
    assert reply.status_code == 200, reply.text
    events: list[list[str]] = reply.json()["stm"]
    return events


async def test_seed_usage_pattern_works_end_to_end_over_http(manager: Manager) -> None:
    session = await manager.create(user_id="alice", genes={"recall_threshold": 0.1})
    assert session["status"] == "ready"
    assert session["token"]
    sid = session["session_id"]
    for symbol in ("hello", "world", "test"):
        await observe(manager, session, symbol)
    assert await stm(manager, session) == [["hello"], ["world"], ["test"]]
    learned = await manager.client.post(f"/session/{sid}/learn", headers=auth(session))
    assert learned.json()["pattern_name"].startswith("PTRN|")
    await manager.client.post(f"/session/{sid}/clear-stm", headers=auth(session))
    await observe(manager, session, "hello")
    await observe(manager, session, "world")
    predictions = await manager.client.get(f"/session/{sid}/predictions", headers=auth(session))
    assert predictions.status_code == 200
    [prediction] = predictions.json()["predictions"]
    assert prediction["future"] == [["test"]]
    gene = await manager.client.get(f"/session/{sid}/gene/recall_threshold", headers=auth(session))
    assert gene.json()["gene_value"] == 0.1


async def test_seed_usage_pattern_works_over_the_websocket_proxy(manager: Manager) -> None:
    session = await manager.create()
    url = f"{manager.ws_url}/session/{session['session_id']}/ws?token={session['token']}"

    async def call(ws: Any, kind: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        await ws.send(json.dumps({"type": kind, "payload": payload or {}}))
        reply: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
        return reply

    async with connect(url, proxy=None, open_timeout=10) as ws:
        for symbol in ("hello", "world", "test"):
            observed = await call(
                ws, "observe", {"strings": [symbol], "vectors": [], "emotives": {}}
            )
            assert observed["type"] == "observation_result"
        assert (await call(ws, "get_stm"))["data"]["stm"] == [["hello"], ["world"], ["test"]]
        assert (await call(ws, "learn"))["data"]["pattern_name"].startswith("PTRN|")
        await call(ws, "clear_stm")
        for symbol in ("hello", "world"):
            await call(ws, "observe", {"strings": [symbol], "vectors": [], "emotives": {}})
        predictions = (await call(ws, "get_predictions"))["data"]["predictions"]
        assert [p["future"] for p in predictions] == [[["test"]]]
    # What the socket did is what HTTP sees: one processor behind both.
    assert await stm(manager, session) == [["hello"], ["world"]]


async def test_two_sessions_have_isolated_stm_and_knowledge(manager: Manager) -> None:
    first, second = await asyncio.gather(
        manager.create(user_id="alice"), manager.create(user_id="alice")
    )
    assert first["kb_id"] != second["kb_id"]
    await observe(manager, first, "hello")
    await observe(manager, first, "world")
    await manager.client.post(f"/session/{first['session_id']}/learn", headers=auth(first))
    await observe(manager, second, "other")
    assert await stm(manager, first) == []  # learn cleared it
    assert await stm(manager, second) == [["other"]]
    await observe(manager, second, "hello")
    await observe(manager, second, "world")
    second_predictions = await manager.client.get(
        f"/session/{second['session_id']}/predictions", headers=auth(second)
    )
    assert second_predictions.json()["predictions"] == []  # first's pattern is not in its KB
    await observe(manager, first, "hello")
    await observe(manager, first, "world")
    first_predictions = await manager.client.get(
        f"/session/{first['session_id']}/predictions", headers=auth(first)
    )
    assert len(first_predictions.json()["predictions"]) == 1


async def test_delete_stops_the_processor_and_later_requests_get_410(manager: Manager) -> None:
    session = await manager.create()
    sid = session["session_id"]
    pid = await pid_of(manager, session)
    assert pid_running(pid)
    deleted = await manager.client.delete(f"/session/{sid}", headers=auth(session))
    assert deleted.status_code == 204
    assert not pid_running(pid)
    for method, path in [
        ("GET", f"/session/{sid}"),
        ("POST", f"/session/{sid}/observe"),
        ("POST", f"/session/{sid}/keepalive"),
        ("DELETE", f"/session/{sid}"),
    ]:
        reply = await manager.client.request(method, path, headers=auth(session), json={})
        assert reply.status_code == 410, (method, path)
        assert reply.json()["error"]["code"] == "SESSION_EXPIRED"
        assert reply.json()["error"]["details"]["reason"] == "deleted"


async def test_admin_delete_stops_the_processor_of_any_session(manager: Manager) -> None:
    session = await manager.create()
    pid = await pid_of(manager, session)
    reply = await manager.client.delete(
        f"/admin/sessions/{session['session_id']}", headers=manager.admin
    )
    assert reply.status_code == 204
    assert not pid_running(pid)
    again = await manager.client.get(f"/session/{session['session_id']}", headers=auth(session))
    assert again.status_code == 410


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/session/{id}"),
        ("POST", "/session/{id}/keepalive"),
        ("DELETE", "/session/{id}"),
        ("POST", "/session/{id}/observe"),
        ("GET", "/admin/sessions/{id}"),
        ("DELETE", "/admin/sessions/{id}"),
    ],
)
async def test_unknown_session_gets_404(manager: Manager, method: str, path: str) -> None:
    reply = await manager.client.request(
        method,
        path.format(id="0123456789abcdef0123456789abcdef"),
        headers={"Authorization": "Bearer whatever", **manager.admin}
        if path.startswith("/admin")
        else {"Authorization": "Bearer whatever"},
    )
    assert reply.status_code == 404
    assert reply.json()["error"]["code"] == "SESSION_NOT_FOUND"


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", "Basic YTpi", "Bearer"])
async def test_wrong_or_missing_token_gets_401_everywhere(
    manager: Manager, header: str | None
) -> None:
    session = await manager.create()
    sid = session["session_id"]
    headers = {} if header is None else {"Authorization": header}
    for method, path in [
        ("GET", f"/session/{sid}"),
        ("POST", f"/session/{sid}/keepalive"),
        ("DELETE", f"/session/{sid}"),
        ("POST", f"/session/{sid}/observe"),
        ("GET", f"/session/{sid}/stm"),
        ("GET", "/admin/sessions"),
        ("GET", "/admin/stats"),
    ]:
        reply = await manager.client.request(method, path, headers=headers, json={"strings": ["x"]})
        assert reply.status_code == 401, (method, path)
        assert reply.json()["error"]["code"] == "UNAUTHORIZED"
    # Nothing reached the processor, and the session is untouched.
    assert await stm(manager, session) == []


async def test_session_auth_none_needs_no_token(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    manager = await start_manager(make_settings(session_auth="none"))
    session = await manager.create()
    assert session["token"] is None
    sid = session["session_id"]
    reply = await manager.client.post(f"/session/{sid}/observe", json={"strings": ["a"]})
    assert reply.status_code == 200
    assert (await manager.client.get(f"/session/{sid}")).json()["status"] == "ready"
    assert (await manager.client.delete(f"/session/{sid}")).status_code == 204


async def test_create_without_wait_answers_202_then_becomes_ready(manager: Manager) -> None:
    reply = await manager.client.post(
        "/session/create?wait=false", json={"user_id": "bob"}, headers=manager.creator
    )
    assert reply.status_code == 202
    session = reply.json()
    assert session["status"] == "starting"
    assert reply.headers["Location"] == f"/session/{session['session_id']}"
    # A request sent while it starts waits for the processor instead of failing.
    result = await observe(manager, session, "early")
    assert result["status"] == "okay"
    info = await manager.client.get(f"/session/{session['session_id']}", headers=auth(session))
    assert info.json()["status"] == "ready"


async def test_keepalive_pushes_the_idle_deadline(manager: Manager) -> None:
    session = await manager.create(idle_timeout_s=60)
    await asyncio.sleep(0.05)
    reply = await manager.client.post(
        f"/session/{session['session_id']}/keepalive", headers=auth(session)
    )
    assert reply.status_code == 200
    assert reply.json()["idle_expires_at"] > session["idle_expires_at"]
    assert reply.json()["expires_at"] == session["expires_at"]


async def test_requested_timeouts_are_capped_by_the_server(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    manager = await start_manager(make_settings(max_age_s=600, idle_timeout_s=300))
    session = await manager.create(idle_timeout_s=10_000, max_age_s=10_000)
    assert session["max_age_s"] == 600
    assert session["idle_timeout_s"] == 600


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"user_id": ""},
        {"user_id": "a b"},
        {"user_id": "a", "genes": []},
        {"user_id": "a", "kb_id": "../etc"},
        {"user_id": "a", "labels": {"bad key": "v"}},
        {"user_id": "a", "idle_timeout_s": 0},
        {"user_id": "a", "extra": 1},
    ],
)
async def test_bad_create_bodies_get_422_and_start_nothing(
    manager: Manager, manager_id: str, body: dict[str, Any]
) -> None:
    reply = await manager.client.post("/session/create", json=body, headers=manager.creator)
    assert reply.status_code == 422
    assert reply.json()["error"]["code"] == "VALIDATION_ERROR"
    assert processes_of(manager_id) == {}


@pytest.mark.parametrize(
    ("genes", "code", "message"),
    [
        ({"quiescence_typo": 1}, "HTTP_400", "Unknown gene: quiescence_typo"),
        ({"recall_threshold": 7}, "INVALID_GENE_VALUE", "Invalid value for gene recall_threshold"),
        ({"max_predictions": -3}, "INVALID_GENE_VALUE", "Invalid value for gene max_predictions"),
        ({"persistence": -1}, "INVALID_GENE_VALUE", "Invalid value for gene persistence"),
        ({"persistence": 9, "bogus": 1}, "HTTP_400", "Unknown gene: bogus"),
        ({"sort": "no"}, "INVALID_GENE_VALUE", "Invalid value for gene sort"),
    ],
)
async def test_bad_genes_at_create_get_the_processors_answer_and_start_nothing(
    manager: Manager, manager_id: str, genes: dict[str, Any], code: str, message: str
) -> None:
    reply = await manager.client.post(
        "/session/create", json={"user_id": "a", "genes": genes}, headers=manager.creator
    )
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == code
    assert reply.json()["error"]["message"].startswith(message)
    assert processes_of(manager_id) == {}


async def test_internal_gene_name_at_create_is_stored_by_its_public_name(manager: Manager) -> None:
    session = await manager.create(genes={"SORT": False})
    assert session["genes"] == {"sort": False}
    reply = await manager.client.get(
        f"/session/{session['session_id']}/gene/sort", headers=auth(session)
    )
    assert reply.json()["gene_value"] is False


async def test_malformed_json_gets_422(manager: Manager) -> None:
    reply = await manager.client.post(
        "/session/create",
        content=b"{nope",
        headers={"content-type": "application/json", **manager.creator},
    )
    assert reply.status_code == 422
    assert reply.json()["error"]["code"] == "INVALID_JSON"


def fake_python(tmp_path: Path, body: str) -> str:
    """An executable standing in for the interpreter: a real process that misbehaves."""
    script = tmp_path / "fake-python"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        ("echo 'Traceback: kb exploded' >&2; exit 3", "exited with code 3"),
        ("echo 'listening soon'; exec sleep 60", "not healthy within"),
    ],
)
async def test_failed_start_says_why_and_leaves_no_process_or_capacity(
    start_manager: StartManager,
    make_settings: SettingsFactory,
    tmp_path: Path,
    manager_id: str,
    script: str,
    reason: str,
) -> None:
    settings = make_settings(start_timeout_s=1, max_sessions=1)
    backend = ProcessBackend(
        manager_id=manager_id,
        log_dir=Path(settings.data_dir) / "processors",
        start_timeout_s=1,
        stop_timeout_s=1,
        python=fake_python(tmp_path, script),
    )
    manager = await start_manager(settings, backend=backend)
    reply = await manager.client.post(
        "/session/create", json={"user_id": "a"}, headers=manager.creator
    )
    assert reply.status_code == 502
    error = reply.json()["error"]
    assert error["code"] == "START_FAILED"
    assert reason in error["message"]
    assert error["details"]["log_tail"][-1] in ("Traceback: kb exploded", "listening soon")
    assert processes_of(manager_id) == {}
    stats = await manager.client.get("/admin/stats", headers=manager.admin)
    assert stats.json()["total"] == 0  # the failed session gave its capacity back


async def test_failed_background_start_is_reported_by_get_as_410(
    start_manager: StartManager, make_settings: SettingsFactory, tmp_path: Path, manager_id: str
) -> None:
    settings = make_settings()
    backend = ProcessBackend(
        manager_id=manager_id,
        log_dir=Path(settings.data_dir) / "processors",
        start_timeout_s=5,
        stop_timeout_s=1,
        python=fake_python(tmp_path, "echo 'bad config' >&2; exit 2"),
    )
    manager = await start_manager(settings, backend=backend)
    reply = await manager.client.post(
        "/session/create?wait=false", json={"user_id": "a"}, headers=manager.creator
    )
    session = reply.json()
    for _ in range(100):
        info = await manager.client.get(f"/session/{session['session_id']}", headers=auth(session))
        if info.status_code != 200:
            break
        await asyncio.sleep(0.05)
    assert info.status_code == 410
    details = info.json()["error"]["details"]
    assert details["reason"] == "start_failed"
    assert details["log_tail"] == ["bad config"]


async def test_racing_creates_never_exceed_the_limits(
    start_manager: StartManager, make_settings: SettingsFactory, manager_id: str
) -> None:
    manager = await start_manager(
        make_settings(max_sessions=6, max_sessions_per_user=3, max_concurrent_starts=4)
    )
    peak = 0
    done = asyncio.Event()

    async def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, len(processes_of(manager_id)))
            await asyncio.sleep(0.02)

    async def create(i: int) -> httpx.Response:
        return await manager.client.post(
            "/session/create", json={"user_id": f"user{i % 3}"}, headers=manager.creator
        )

    watcher = asyncio.create_task(watch())
    replies = await asyncio.gather(*(create(i) for i in range(50)))
    done.set()
    await watcher
    created = [r for r in replies if r.status_code == 201]
    refused = [r for r in replies if r.status_code == 429]
    assert len(created) + len(refused) == 50
    assert 1 <= len(created) <= 6
    for reply in refused:
        assert reply.json()["error"]["code"] == "CAPACITY_EXCEEDED"
        assert int(reply.headers["Retry-After"]) >= 1
    per_user: dict[str, int] = {}
    for reply in created:
        per_user[reply.json()["user_id"]] = per_user.get(reply.json()["user_id"], 0) + 1
    assert max(per_user.values()) <= 3
    assert peak <= 6
    assert len(processes_of(manager_id)) == len(created)
    # Later creates fill the room left, and no further.
    while len(created) < 6:
        reply = await create(len(created))
        if reply.status_code == 201:
            created.append(reply)
    assert (await create(0)).status_code == 429
    assert len(processes_of(manager_id)) == 6


async def test_health_ready_and_metrics(manager: Manager) -> None:
    await manager.create()
    assert (await manager.client.get("/health")).json() == {"status": "ok"}
    assert (await manager.client.get("/ready")).json() == {"status": "ready"}
    text = (await manager.client.get("/metrics")).text
    assert 'kato_sessions{status="ready"} 1.0' in text
    assert 'kato_session_start_seconds_count{outcome="ready"} 1.0' in text
    assert "kato_proxy_requests_total" in text or "kato_proxy_requests" in text


async def test_processor_outlives_a_manager_shutdown(
    start_manager: StartManager, make_settings: SettingsFactory, manager_id: str
) -> None:
    settings = make_settings()
    async with serve(create_app(settings)) as base_url:
        first = Manager(base_url)
        session = await first.create()
        pid = await pid_of(first, session)
        await first.aclose()
    # The whole lifespan has shut down: the processor still runs, in its own process group.
    assert pid_running(pid)
    assert os.getpgid(pid) == pid
    second = await start_manager(settings)
    await observe(second, session, "still-here")
    assert await stm(second, session) == [["still-here"]]
    assert processes_of(manager_id) == {pid: session["session_id"]}


async def test_deleting_a_session_while_it_starts_stops_its_processor(
    manager: Manager, manager_id: str
) -> None:
    reply = await manager.client.post(
        "/session/create?wait=false", json={"user_id": "a"}, headers=manager.creator
    )
    session = reply.json()
    deleted = await manager.client.delete(
        f"/session/{session['session_id']}", headers=auth(session)
    )
    assert deleted.status_code == 204
    for _ in range(200):  # the start finishes, finds the session ended, removes its processor
        if not processes_of(manager_id) and not manager.app.state.sessions.starts_in_flight:
            break
        await asyncio.sleep(0.05)
    assert processes_of(manager_id) == {}
    again = await manager.client.get(f"/session/{session['session_id']}", headers=auth(session))
    assert again.status_code == 410


async def test_a_dead_processor_gives_502_at_once_with_the_journal_off(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    """With ``JOURNAL=on`` the session is recovered instead (test_crash_recovery)."""
    manager = await start_manager(make_settings(journal="off"))
    session = await manager.create()
    pid = await pid_of(manager, session)
    os.killpg(pid, 9)
    while pid_running(pid):
        await asyncio.sleep(0.02)
    reply = await manager.client.get(f"/session/{session['session_id']}/stm", headers=auth(session))
    assert reply.status_code == 502
    assert reply.json()["error"]["code"] == "PROCESSOR_UNAVAILABLE"


async def test_two_replicas_sharing_redis_serve_the_same_sessions(
    start_manager: StartManager, make_settings: SettingsFactory, manager_id: str
) -> None:
    settings = make_settings(max_sessions=2)
    first, second = await start_manager(settings), await start_manager(settings)
    session = await first.create()
    await observe(second, session, "via-second")
    assert await stm(first, session) == [["via-second"]]
    await second.create()
    # Capacity is shared: the replicas together hold MAX_SESSIONS=2.
    refused = await first.client.post(
        "/session/create", json={"user_id": "x"}, headers=first.creator
    )
    assert refused.status_code == 429
    deleted = await second.client.delete(f"/session/{session['session_id']}", headers=auth(session))
    assert deleted.status_code == 204
    gone = await first.client.get(f"/session/{session['session_id']}/stm", headers=auth(session))
    assert gone.status_code == 410
    assert len(processes_of(manager_id)) == 1


async def test_every_reply_carries_the_request_id(manager: Manager) -> None:
    given = await manager.client.get("/session/nope", headers={"X-Request-ID": "trace-42"})
    assert given.headers["X-Request-ID"] == "trace-42"
    generated = await manager.client.get("/health")
    assert len(generated.headers["X-Request-ID"]) == 32
    unsafe = await manager.client.get("/health", headers={"X-Request-ID": "a b{}"})
    assert unsafe.headers["X-Request-ID"] != "a b{}"
    session = await manager.create()
    proxied = await manager.client.get(
        f"/session/{session['session_id']}/stm",
        headers={**auth(session), "X-Request-ID": "trace-43"},
    )
    assert proxied.headers.get_list("X-Request-ID") == ["trace-43"]


async def test_genes_given_at_create_reach_the_processor(manager: Manager) -> None:
    genes = {"sort": False, "max_predictions": 3, "always_update_frequencies": True}
    session = await manager.create(genes=genes)
    assert session["genes"] == genes
    for name, value in genes.items():
        reply = await manager.client.get(
            f"/session/{session['session_id']}/gene/{name}", headers=auth(session)
        )
        assert reply.json()["gene_value"] == value, name


async def test_openapi_documents_the_error_answers_in_the_error_body(manager: Manager) -> None:
    schema = (await manager.client.get("/schema/openapi.json")).json()

    def errors(path: str, method: str) -> dict[str, str]:
        responses = schema["paths"][path][method]["responses"]
        return {
            status: response["description"]
            for status, response in responses.items()
            if not status.startswith("2")
            and response["content"]["application/json"]["schema"]
            .get("$ref", "")
            .endswith("/ErrorResponse")
        }

    create = errors("/session/create", "post")
    assert set(create) == {"400", "401", "403", "409", "413", "422", "429", "502", "503"}
    assert create["400"] == "INVALID_GENE_VALUE or HTTP_400"
    assert create["503"] == "STORE_UNAVAILABLE or BACKEND_UNAVAILABLE"
    one = errors("/session/{session_id}", "get")
    assert set(one) == {"401", "404", "410", "422", "503"}  # 422: a bad ?live_genes
    assert one["410"] == "SESSION_EXPIRED"
    assert set(errors("/admin/sessions", "get")) == {"422", "401", "403", "503"}
