"""The admin API over HTTP: listing 1,200 sessions written straight into Redis, stats, errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from session_manager.models import SessionRecord, SessionStatus
from session_manager.store import Capacity, SessionStore
from tests.support.manager import Manager

ROOMY = Capacity(
    max_sessions=10_000, max_per_user=10_000, max_starts=10_000, start_timeout_ms=60_000
)


@pytest.fixture(name="seeded")
async def fx_seeded(manager: Manager) -> AsyncIterator[list[SessionRecord]]:
    """1,200 records over 4 users, 3 teams, ready or hibernated; removed again afterwards."""
    store: SessionStore = manager.app.state.store
    now = store.clock.now_ms()
    records = []
    for i in range(1200):
        rec = SessionRecord(
            session_id=f"{i:04d}-{(i * 7919) % 10007:05d}",
            user_id=f"user{i % 4}",
            kb_id=f"kb{i}",
            processor_id=f"p{i}",
            status=SessionStatus.STARTING,
            created_at=now - 1200 + i // 2,  # two sessions per millisecond
            last_activity=now,
            status_changed_at=now,
            idle_timeout_s=900,
            max_age_s=3600,
            labels={"team": ("red", "green", "blue")[i % 3]},
        )
        await store.reserve(rec, ROOMY)
        final = SessionStatus.HIBERNATED if i % 5 == 0 else SessionStatus.READY
        await store.transition(
            rec.session_id, allowed=[SessionStatus.STARTING], to=final, start_slot="remove"
        )
        records.append(rec)
    yield records
    await store.redis.flushdb()


async def list_all(manager: Manager, **params: Any) -> tuple[list[dict[str, Any]], int]:
    sessions: list[dict[str, Any]] = []
    pages = 0
    cursor = None
    while True:
        query = {**params, "limit": 500, **({"cursor": cursor} if cursor else {})}
        reply = await manager.client.get("/admin/sessions", params=query, headers=manager.admin)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        pages += 1
        sessions += body["sessions"]
        cursor = body["next_cursor"]
        if cursor is None:
            return sessions, pages


async def test_listing_pages_through_1200_sessions_once_each_in_creation_order(
    manager: Manager, seeded: list[SessionRecord]
) -> None:
    sessions, pages = await list_all(manager)
    assert pages == 3
    assert [s["session_id"] for s in sessions] == [r.session_id for r in seeded]


@pytest.mark.parametrize(
    ("params", "keep"),
    [
        ({"status": "hibernated"}, lambda i: i % 5 == 0),
        ({"user_id": "user3"}, lambda i: i % 4 == 3),
        ({"label": "team:green"}, lambda i: i % 3 == 1),
        ({"label": "team:blue", "status": "ready"}, lambda i: i % 3 == 2 and i % 5 != 0),
        ({"user_id": "user0", "label": "team:red"}, lambda i: i % 4 == 0 and i % 3 == 0),
        ({"label": "team:purple"}, lambda i: False),
    ],
)
async def test_listing_filters_select_exactly_the_matching_sessions(
    manager: Manager, seeded: list[SessionRecord], params: dict[str, str], keep: Any
) -> None:
    sessions, _ = await list_all(manager, **params)
    assert [s["session_id"] for s in sessions] == [
        r.session_id for i, r in enumerate(seeded) if keep(i)
    ]


async def test_a_cursor_survives_the_session_it_points_at_ending(
    manager: Manager, seeded: list[SessionRecord]
) -> None:
    first = await manager.client.get(
        "/admin/sessions", params={"limit": 100}, headers=manager.admin
    )
    body = first.json()
    assert body["sessions"][-1]["session_id"] == seeded[99].session_id
    store: SessionStore = manager.app.state.store
    await store.end(seeded[99].session_id, "deleted", 60)
    await store.end(seeded[100].session_id, "deleted", 60)
    again = await manager.client.get(
        "/admin/sessions",
        params={"limit": 100, "cursor": body["next_cursor"]},
        headers=manager.admin,
    )
    ids = [s["session_id"] for s in again.json()["sessions"]]
    assert ids == [r.session_id for r in seeded[101:201]]


async def test_stats_count_sessions_by_status_and_capacity_left(
    manager: Manager, seeded: list[SessionRecord]
) -> None:
    stats = (await manager.client.get("/admin/stats", headers=manager.admin)).json()
    assert stats["sessions_by_status"]["hibernated"] == 240
    assert stats["sessions_by_status"]["ready"] == 960
    assert stats["total"] == 1200
    assert stats["capacity"]["left"] == 0  # MAX_SESSIONS defaults to 500: over-full by seeding
    assert stats["backend"] == "process"


async def test_admin_inspect_shows_where_the_processor_runs(
    manager: Manager, seeded: list[SessionRecord]
) -> None:
    reply = await manager.client.get(
        f"/admin/sessions/{seeded[1].session_id}", headers=manager.admin
    )
    assert reply.status_code == 200
    assert reply.json()["status"] == "ready"
    assert {"backend", "ref", "endpoint", "status_changed_at"} <= reply.json().keys()


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 501},
        {"limit": 0},
        {"cursor": "garbage!"},
        {"status": "sleeping"},
        {"label": "no-colon"},
    ],
)
async def test_bad_listing_queries_get_422(manager: Manager, params: dict[str, Any]) -> None:
    reply = await manager.client.get("/admin/sessions", params=params, headers=manager.admin)
    assert reply.status_code == 422
    assert reply.json()["error"]["code"] == "VALIDATION_ERROR"


async def test_wrong_admin_token_gets_401(manager: Manager) -> None:
    reply = await manager.client.get(
        "/admin/sessions", headers={"Authorization": "Bearer not-the-admin-token"}
    )
    assert reply.status_code == 401
