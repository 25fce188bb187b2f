"""What a new user meets first: ``GET /``, the API docs, one timestamp format, limits in 413s.

Also the console's login and actions over plain HTTP (the browser test drives the pages) and
the admin API's keepalive / hibernate / restore, on a real manager with real processors.
"""

from __future__ import annotations

import datetime as dt
import re

import httpx

from tests.support.manager import (
    ADMIN,
    ADMIN_TOKEN,
    CREATOR,
    Manager,
    SettingsFactory,
    StartManager,
    auth,
)
from tests.support.timing import wait_for


def _iso(value: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(value)
    assert parsed.tzinfo is not None, value
    return parsed


async def test_root_links_to_docs_health_and_console(manager: Manager) -> None:
    reply = await manager.client.get("/")
    assert reply.status_code == 200
    links = reply.json()["links"]
    assert links["console"] == "/console"
    assert links["api_docs"] == "/schema"
    assert links["health"] == "/health"
    page = await manager.client.get("/", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert 'href="/console"' in page.text
    assert 'href="/schema"' in page.text


async def test_api_docs_load_nothing_from_other_hosts(manager: Manager) -> None:
    for path in ("/schema", "/schema/swagger"):
        page = await manager.client.get(path)
        assert page.status_code == 200, path
        urls = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page.text)
        assert urls, page.text[:500]
        assert all(url.startswith("/schema/assets/") for url in urls), urls
        for url in urls:
            asset = await manager.client.get(url)
            assert asset.status_code == 200, url
            assert len(asset.content) > 500, url
    assert (await manager.client.get("/schema/assets/../../etc/passwd")).status_code == 404
    assert (await manager.client.get("/schema/assets/index.html")).status_code == 404
    # What the document says of a bad query parameter is what the manager answers.
    schema = (await manager.client.get("/schema/openapi.json")).json()
    read = schema["paths"]["/session/{session_id}"]["get"]["responses"]
    assert "400" not in read
    assert read["422"]["description"] == "VALIDATION_ERROR"
    bad = await manager.client.get("/session/x?live_genes=maybe")
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "VALIDATION_ERROR"


async def test_openapi_documents_the_proxied_processor_routes(manager: Manager) -> None:
    schema = (await manager.client.get("/schema/openapi.json")).json()
    paths = schema["paths"]
    observe = paths["/session/{session_id}/observe"]["post"]
    assert "processor (proxied)" in observe["tags"]
    assert observe["parameters"][0]["name"] == "session_id"
    assert observe["requestBody"]["content"]["application/json"]["schema"]["$ref"] == (
        "#/components/schemas/ProcessorObserveRequest"
    )
    for status in ("401", "410", "422", "503"):
        ref = observe["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("ErrorResponse"), status
    for path in ("/stm", "/learn", "/predictions", "/genes/update", "/gene/{gene_name}"):
        assert f"/session/{{session_id}}{path}" in paths, path
    assert "/session/{session_id}/fence" not in paths  # the manager's alone
    referenced = set(re.findall(r'"#/components/schemas/([^"]+)"', str(schema).replace("'", '"')))
    assert referenced <= set(schema["components"]["schemas"]), referenced
    # Gateway routes only in gateway mode; every error answer in the error JSON.
    assert not any(p.startswith(("/processors", "/kato-api", "/connect")) for p in paths)
    for path, item in paths.items():
        for method, operation in item.items():
            for status, response in operation.get("responses", {}).items():
                if status[0] in "45":
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("ErrorResponse"), (path, method, status)


async def test_gateway_routes_are_documented_in_gateway_mode(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    processors = '{"static-a": "http://127.0.0.1:9"}'
    manager = await start_manager(make_settings(kato_processors=processors))
    paths = (await manager.client.get("/schema/openapi.json")).json()["paths"]
    observe = paths["/processors/{processor_id}/observe"]["post"]["responses"]
    for status in ("404", "502", "503"):
        ref = observe[status]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/ErrorResponse"), status
    processors = (await manager.client.get("/admin/processors", headers=ADMIN)).json()
    assert processors[0]["healthy"] is False  # nothing listens there
    _iso(processors[0]["checked_at"])


async def test_every_timestamp_in_admin_bodies_is_iso_8601(manager: Manager) -> None:
    await manager.create(user_id="u1")
    report = (await manager.client.post("/admin/reap", headers=ADMIN)).json()
    _iso(report["started_at"])
    view = (await manager.client.get("/admin/sessions", headers=ADMIN)).json()["sessions"][0]
    for key in ("created_at", "last_activity", "idle_expires_at", "expires_at"):
        _iso(view[key])
    _iso(view["status_changed_at"])


async def test_ended_session_410_gives_ended_at_in_iso_8601(manager: Manager) -> None:
    session = await manager.create(user_id="u1")
    sid = session["session_id"]
    assert (
        await manager.client.delete(f"/session/{sid}", headers=auth(session))
    ).status_code == 204
    reply = await manager.client.get(f"/session/{sid}", headers=auth(session))
    assert reply.status_code == 410
    ended = _iso(reply.json()["error"]["details"]["ended_at"])
    assert abs((dt.datetime.now(dt.UTC) - ended).total_seconds()) < 60


async def test_create_413_gives_the_limit(manager: Manager) -> None:
    body = b'{"user_id": "u", "labels": {"a": "' + b"x" * 10_000_001 + b'"}}'
    reply = await manager.client.post(
        "/session/create",
        content=body,
        headers={**CREATOR, "Content-Type": "application/json"},
    )
    assert reply.status_code == 413
    error = reply.json()["error"]
    assert error["code"] == "BODY_TOO_LARGE"
    assert error["details"]["limit_bytes"] == 10_000_000


async def test_admin_keepalive_hibernate_restore(manager: Manager) -> None:
    session = await manager.create(user_id="u1", idle_timeout_s=600)
    sid = session["session_id"]
    observe = await manager.client.post(
        f"/session/{sid}/observe", json={"strings": ["a", "b"]}, headers=auth(session)
    )
    assert observe.status_code == 200
    kept = await manager.client.post(f"/admin/sessions/{sid}/keepalive", headers=ADMIN)
    assert kept.status_code == 200
    assert _iso(kept.json()["idle_expires_at"]) >= _iso(session["idle_expires_at"])
    restore_too_early = await manager.client.post(f"/admin/sessions/{sid}/restore", headers=ADMIN)
    assert restore_too_early.status_code == 409
    assert restore_too_early.json()["error"]["code"] == "SESSION_CONFLICT"
    hibernated = await manager.client.post(f"/admin/sessions/{sid}/hibernate", headers=ADMIN)
    assert hibernated.status_code == 200, hibernated.text
    assert hibernated.json()["status"] == "hibernated"
    restored = await manager.client.post(f"/admin/sessions/{sid}/restore", headers=ADMIN)
    assert restored.status_code == 200, restored.text
    assert restored.json()["status"] == "ready"
    stm = await manager.client.get(f"/session/{sid}/stm", headers=auth(session))
    assert stm.json()["stm"] == [["a", "b"]]
    assert (await manager.client.post(f"/admin/sessions/{sid}/hibernate")).status_code == 401


async def test_console_login_sets_a_cookie_and_actions_need_the_form_token(
    manager: Manager,
) -> None:
    session = await manager.create(user_id="console-user")
    sid = session["session_id"]
    async with httpx.AsyncClient(base_url=manager.base_url) as browser:
        assert (await browser.get("/console")).headers["location"] == "/console/login"
        wrong = await browser.post("/console/login", data={"token": "not-the-token"})
        assert wrong.status_code == 401
        assert "wrong admin token" in wrong.text
        login = await browser.post("/console/login", data={"token": ADMIN_TOKEN})
        assert login.status_code == 303
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "samesite=strict" in cookie.lower()
        assert "Path=/console" in cookie
        page = await browser.get("/console")
        assert page.status_code == 200
        assert sid in page.text
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
        assert csrf is not None
        forged = await browser.post(f"/console/sessions/{sid}/delete", data={"csrf": "0" * 32})
        assert forged.status_code == 403
        detail = await browser.get(f"/console/sessions/{sid}")
        assert "console-user" in detail.text
        deleted = await browser.post(
            f"/console/sessions/{sid}/delete", data={"csrf": csrf.group(1), "back": "/console"}
        )
        assert deleted.status_code == 303
        assert "notice=delete" in deleted.headers["location"]

    async def gone() -> bool:
        reply = await manager.client.get(f"/session/{sid}", headers=auth(session))
        return reply.status_code == 410

    assert await wait_for(gone, 10)
