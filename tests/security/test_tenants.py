"""Findings 2 and 3 of issue 13: who may create sessions, as which tenant, with whose knowledge.

Before: ``POST /session/create`` took no credential, ``user_id`` was whatever the caller wrote
(the per-user limit fell to varying it), and any caller could name another session's id (its
private knowledge base) or another app's ``kb_id`` and read or wipe it. Now a create needs an
API key of a tenant, quotas hold per tenant, users are namespaced by tenant, a tenant's admin
key sees only its tenant, and a knowledge base belongs to whoever claimed it first.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from session_manager.sessions.tokens import hash_token
from tests.mongo_server import mongo_server
from tests.support.manager import ADMIN, Manager, SettingsFactory, StartManager, auth
from tests.support.pids import processes_of

CREATE_A = "tenant-a-creates-sessions-0123456789"
ADMIN_A = "tenant-a-administers-0123456789"
CREATE_B = "tenant-b-creates-sessions-0123456789"
ADMIN_B = "tenant-b-administers-0123456789"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def two_tenants(max_a: int = 10, per_user_a: int = 10, memory_a: int | None = None) -> str:
    """An ``API_KEYS`` document: tenants ``a`` and ``b``, keys stored as hashes or plain."""
    quota_a: dict[str, int] = {"max_sessions": max_a, "max_sessions_per_user": per_user_a}
    if memory_a is not None:
        quota_a["max_memory_mb"] = memory_a
    return json.dumps(
        {
            "tenants": {
                "a": quota_a,
                "b": {"max_sessions": 10},
            },
            "keys": [
                {"tenant": "a", "scopes": ["sessions:create"], "sha256": hash_token(CREATE_A)},
                {"tenant": "a", "scopes": ["admin"], "sha256": hash_token(ADMIN_A)},
                {"tenant": "b", "scopes": ["sessions:create"], "key": CREATE_B},
                {"tenant": "b", "scopes": ["admin"], "key": ADMIN_B},
            ],
        }
    )


async def create(
    manager: Manager, key: str | None, expect: int = 201, **body: Any
) -> dict[str, Any]:
    body.setdefault("user_id", "alice")
    headers = bearer(key) if key else {}
    reply = await manager.client.post("/session/create", json=body, headers=headers)
    assert reply.status_code == expect, reply.text
    answer: dict[str, Any] = reply.json()
    return answer


@pytest.fixture(name="tenants")
async def fx_tenants(start_manager: StartManager, make_settings: SettingsFactory) -> Manager:
    return await start_manager(make_settings(api_keys=two_tenants()))


# -- finding 2: who may create ---------------------------------------------------------------


async def test_a_create_without_a_valid_key_is_401_and_starts_nothing(
    tenants: Manager, manager_id: str
) -> None:
    for headers in ({}, bearer("not-a-key-0123456789abcdef"), ADMIN, {"Authorization": "Basic x"}):
        reply = await tenants.client.post(
            "/session/create", json={"user_id": "alice"}, headers=headers
        )
        assert reply.status_code == 401, (headers, reply.text)
        assert reply.json()["error"]["code"] == "UNAUTHORIZED"
    # An admin-only key is a valid credential without the scope: 403.
    refused = await tenants.client.post(
        "/session/create", json={"user_id": "alice"}, headers=bearer(ADMIN_A)
    )
    assert refused.status_code == 403
    assert processes_of(manager_id) == {}
    listed = await tenants.client.get("/admin/sessions", headers=ADMIN)
    assert listed.json()["sessions"] == []


async def test_trusting_key_less_creates_is_an_explicit_setting(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    manager = await start_manager(make_settings(api_keys=two_tenants(), create_auth="none"))
    session = await create(manager, None)
    assert session["tenant"] == "default"
    # A key that is given is still checked, and still decides the tenant.
    await create(manager, "not-a-key-0123456789abcdef", expect=401)
    assert (await create(manager, CREATE_B))["tenant"] == "b"


# -- tenants cannot reach each other ---------------------------------------------------------


async def test_another_tenants_session_and_users_are_out_of_reach(tenants: Manager) -> None:
    theirs = await create(tenants, CREATE_B, user_id="alice")
    ours = await create(tenants, CREATE_A, user_id="alice")
    assert (theirs["tenant"], ours["tenant"]) == ("b", "a")
    sid = theirs["session_id"]
    # Tenant a's keys are no session token for b's session ...
    for key in (CREATE_A, ADMIN_A):
        for method, path in (
            ("GET", f"/session/{sid}"),
            ("GET", f"/session/{sid}/stm"),
            ("POST", f"/session/{sid}/clear-all"),
            ("DELETE", f"/session/{sid}"),
        ):
            reply = await tenants.client.request(method, path, headers=bearer(key))
            assert reply.status_code == 401, (method, path, reply.text)
    # ... and a's admin key does not see it: inspect, keepalive and remove answer as for no
    # session.
    for method, path in (
        ("GET", f"/admin/sessions/{sid}"),
        ("POST", f"/admin/sessions/{sid}/keepalive"),
        ("DELETE", f"/admin/sessions/{sid}"),
    ):
        reply = await tenants.client.request(method, path, headers=bearer(ADMIN_A))
        assert reply.status_code == 404, reply.text
        assert reply.json()["error"]["code"] == "SESSION_NOT_FOUND"
        assert "alice" not in reply.text
    listed = await tenants.client.get(
        "/admin/sessions", params={"user_id": "alice"}, headers=bearer(ADMIN_A)
    )
    assert [s["session_id"] for s in listed.json()["sessions"]] == [ours["session_id"]]
    other = await tenants.client.get(
        "/admin/sessions", params={"tenant": "b"}, headers=bearer(ADMIN_A)
    )
    assert other.status_code == 403
    for path in ("/admin/stats", "/admin/processors"):
        assert (await tenants.client.get(path, headers=bearer(ADMIN_A))).status_code == 403
    assert (await tenants.client.post("/admin/reap", headers=bearer(ADMIN_A))).status_code == 403
    # b's session is untouched and b's admin key sees it; the deployment's token sees both.
    alive = await tenants.client.get(f"/session/{sid}/stm", headers=auth(theirs))
    assert alive.status_code == 200
    seen_by_b = await tenants.client.get("/admin/sessions", headers=bearer(ADMIN_B))
    assert [s["session_id"] for s in seen_by_b.json()["sessions"]] == [sid]
    everyone = await tenants.client.get("/admin/sessions", headers=ADMIN)
    assert {s["session_id"] for s in everyone.json()["sessions"]} == {sid, ours["session_id"]}
    only_b = await tenants.client.get("/admin/sessions", params={"tenant": "b"}, headers=ADMIN)
    assert [s["session_id"] for s in only_b.json()["sessions"]] == [sid]


async def test_the_per_user_limit_counts_a_tenants_own_users(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    manager = await start_manager(make_settings(api_keys=two_tenants(per_user_a=1)))
    await create(manager, CREATE_A, user_id="alice")
    refused = await create(manager, CREATE_A, expect=429, user_id="alice")
    assert refused["error"]["details"]["limit"] == "MAX_SESSIONS_PER_USER"
    # Tenant b's "alice" is another person: a's limit is not hers.
    await create(manager, CREATE_B, user_id="alice")


async def test_a_tenants_quota_holds_under_50_racing_creates(
    start_manager: StartManager, make_settings: SettingsFactory, manager_id: str
) -> None:
    manager = await start_manager(make_settings(api_keys=two_tenants(max_a=10), start_timeout_s=90))

    async def attempt(n: int) -> httpx.Response:
        # Fifty different user ids: varying user_id must not get past the tenant's quota.
        return await manager.client.post(
            "/session/create", json={"user_id": f"user-{n}"}, headers=bearer(CREATE_A)
        )

    replies = await asyncio.gather(*(attempt(n) for n in range(50)))
    statuses = sorted(r.status_code for r in replies)
    assert statuses == [201] * 10 + [429] * 40, [r.text for r in replies if r.status_code >= 500]
    limits = {r.json()["error"]["details"]["limit"] for r in replies if r.status_code == 429}
    assert limits == {"TENANT_MAX_SESSIONS"}
    assert len(processes_of(manager_id)) == 10
    # Tenant a's quota is a's: b still creates.
    await create(manager, CREATE_B)


async def test_a_tenants_memory_quota_holds_under_50_racing_creates(
    start_manager: StartManager, make_settings: SettingsFactory, manager_id: str
) -> None:
    """640 MB for sessions of 128 MB each: five run, whatever the session quota (10) allows."""
    manager = await start_manager(
        make_settings(
            api_keys=two_tenants(max_a=10, memory_a=640),
            processor_memory_limit="128m",
            start_timeout_s=90,
        )
    )

    async def attempt(n: int) -> httpx.Response:
        return await manager.client.post(
            "/session/create", json={"user_id": f"user-{n}"}, headers=bearer(CREATE_A)
        )

    replies = await asyncio.gather(*(attempt(n) for n in range(50)))
    statuses = sorted(r.status_code for r in replies)
    assert statuses == [201] * 5 + [429] * 45, [r.text for r in replies if r.status_code >= 500]
    errors = [r.json()["error"] for r in replies if r.status_code == 429]
    assert {e["code"] for e in errors} == {"CAPACITY_EXCEEDED"}
    assert {e["details"]["limit"] for e in errors} == {"TENANT_MAX_MEMORY_MB"}
    assert {e["details"]["max"] for e in errors} == {5}
    assert len(processes_of(manager_id)) == 5
    # Ending one frees its memory for the next.
    session = next(r.json() for r in replies if r.status_code == 201)
    ended = await manager.client.delete(f"/session/{session['session_id']}", headers=auth(session))
    assert ended.status_code == 204
    await create(manager, CREATE_A, user_id="late")
    await create(manager, CREATE_B)  # b has no memory quota


# -- finding 3: knowledge bases have an owner ------------------------------------------------


async def test_a_knowledge_base_belongs_to_the_tenant_that_first_used_it(
    tenants: Manager, manager_id: str
) -> None:
    shared = await create(tenants, CREATE_B, kb_id="b-team-kb")
    private = await create(tenants, CREATE_B)
    assert private["kb_id"] == private["session_id"]
    before = set(processes_of(manager_id))
    for kb_id in ("b-team-kb", private["session_id"]):
        refused = await create(tenants, CREATE_A, expect=403, kb_id=kb_id)
        assert refused["error"]["code"] == "FORBIDDEN"
    assert set(processes_of(manager_id)) == before  # refused before any processor started
    # The owner tenant shares its knowledge base; a private one is its session's alone.
    again = await create(tenants, CREATE_B, kb_id="b-team-kb", user_id="bob")
    assert again["kb_id"] == shared["kb_id"]
    await create(tenants, CREATE_B, expect=403, kb_id=private["session_id"])
    # Once the session ended, its private knowledge base stays unreachable while its
    # tombstone lives (it is being dropped).
    ended = await tenants.client.delete(f"/session/{private['session_id']}", headers=auth(private))
    assert ended.status_code == 204
    await create(tenants, CREATE_B, expect=403, kb_id=private["session_id"])
    await create(tenants, CREATE_A, expect=403, kb_id=private["session_id"])


@pytest.fixture(name="mongo_url", scope="module")
def fx_mongo_url() -> Iterator[str]:
    with mongo_server() as url:
        yield url


@pytest.mark.mongo
async def test_with_mongodb_another_tenant_cannot_read_or_wipe_a_knowledge_base(
    start_manager: StartManager, make_settings: SettingsFactory, mongo_url: str
) -> None:
    manager = await start_manager(
        make_settings(api_keys=two_tenants(), processor_storage="mongodb", mongo_url=mongo_url)
    )
    victims = [await create(manager, CREATE_B), await create(manager, CREATE_B, kb_id="b-kb")]
    for victim in victims:
        base = f"/session/{victim['session_id']}"
        for word in ("secret", "plans", "here"):
            await manager.client.post(
                f"{base}/observe", json={"strings": [word]}, headers=auth(victim)
            )
        learned = await manager.client.post(f"{base}/learn", headers=auth(victim))
        assert learned.json()["pattern_name"].startswith("PTRN|")
    for victim in victims:
        # The attack: a session of tenant a on b's knowledge base, to read or clear-all it.
        refused = await create(manager, CREATE_A, expect=403, kb_id=victim["kb_id"])
        assert refused["error"]["code"] == "FORBIDDEN"
        assert "secret" not in json.dumps(refused)
    listed = await manager.client.get("/admin/sessions", params={"tenant": "a"}, headers=ADMIN)
    assert listed.json()["sessions"] == []
    for victim in victims:  # b's patterns are all still there
        for word in ("secret", "plans"):
            await manager.client.post(
                f"/session/{victim['session_id']}/observe",
                json={"strings": [word]},
                headers=auth(victim),
            )
        found = await manager.client.get(
            f"/session/{victim['session_id']}/predictions", headers=auth(victim)
        )
        assert [p["future"] for p in found.json()["predictions"]] == [[["here"]]]


# -- token rotation by the tenant's key --------------------------------------------------------


async def _stm(manager: Manager, session: dict[str, Any], token: str) -> int:
    reply = await manager.client.get(f"/session/{session['session_id']}/stm", headers=bearer(token))
    return reply.status_code


@pytest.mark.parametrize("key", [CREATE_A, ADMIN_A])
async def test_the_owning_tenants_key_rotates_a_sessions_token(tenants: Manager, key: str) -> None:
    """An app backend voids a leaked token without knowing it: the old one is refused at once."""
    session = await create(tenants, CREATE_A)
    old = session["token"]
    assert await _stm(tenants, session, old) == 200
    reply = await tenants.client.post(
        f"/session/{session['session_id']}/token", headers=bearer(key)
    )
    assert reply.status_code == 200, reply.text
    new = reply.json()["token"]
    assert new != old
    assert await _stm(tenants, session, old) == 401
    assert await _stm(tenants, session, new) == 200


@pytest.mark.parametrize("key", [CREATE_B, ADMIN_B])
async def test_another_tenants_key_cannot_rotate_a_sessions_token(
    tenants: Manager, key: str
) -> None:
    session = await create(tenants, CREATE_A)
    reply = await tenants.client.post(
        f"/session/{session['session_id']}/token", headers=bearer(key)
    )
    assert reply.status_code == 404
    assert reply.json()["error"]["code"] == "SESSION_NOT_FOUND"
    assert "token" not in reply.json()
    assert await _stm(tenants, session, session["token"]) == 200  # nothing changed


async def test_a_tenants_admin_key_in_the_console_sees_and_removes_only_its_sessions(
    tenants: Manager,
) -> None:
    mine = await create(tenants, CREATE_A, user_id="alice")
    theirs = await create(tenants, CREATE_B, user_id="bob")
    async with httpx.AsyncClient(base_url=tenants.base_url) as browser:
        login = await browser.post("/console/login", data={"token": ADMIN_A})
        assert login.status_code == 303
        page = await browser.get("/console", params={"tenant": "b"})  # ignored for a tenant key
        assert mine["session_id"] in page.text
        assert theirs["session_id"] not in page.text
        assert 'id="stats"' not in page.text  # deployment-wide numbers: ADMIN_TOKEN only
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
        assert csrf is not None
        other = await browser.get(f"/console/sessions/{theirs['session_id']}")
        assert other.status_code == 404
        removed = await browser.post(
            f"/console/sessions/{theirs['session_id']}/delete", data={"csrf": csrf.group(1)}
        )
        assert "delete+failed" in removed.headers["location"]
    alive = await tenants.client.get(f"/session/{theirs['session_id']}", headers=auth(theirs))
    assert alive.json()["status"] == "ready"
