"""SessionStore against a real Redis: capacity, compare-and-set, tombstones, deadlines, listing."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
import redis.asyncio as aioredis

from session_manager.errors import CapacityExceeded, SessionConflict, StoreUnavailable
from session_manager.models import SessionRecord, SessionStatus
from session_manager.store import Capacity, SessionStore, encode_cursor
from tests.support.timing import ManualClock

ROOMY = Capacity(
    max_sessions=10_000, max_per_user=10_000, max_starts=10_000, start_timeout_ms=60_000
)


def record(session_id: str, clock: ManualClock, **fields: Any) -> SessionRecord:
    values: dict[str, Any] = {
        "session_id": session_id,
        "user_id": "alice",
        "kb_id": session_id,
        "processor_id": session_id,
        "status": SessionStatus.STARTING,
        "created_at": clock.now_ms(),
        "last_activity": clock.now_ms(),
        "status_changed_at": clock.now_ms(),
        "idle_timeout_s": 60,
        "max_age_s": 3600,
    }
    values.update(fields)
    return SessionRecord(**values)


async def make_ready(store: SessionStore, rec: SessionRecord, clock: ManualClock) -> None:
    await store.reserve(rec, ROOMY)
    now = clock.now_ms()
    result = await store.transition(
        rec.session_id,
        allowed=[SessionStatus.STARTING],
        to=SessionStatus.READY,
        fields={"backend": "process", "ref": "123", "endpoint": "http://127.0.0.1:9"},
        idle_deadline=now + rec.idle_timeout_s * 1000,
        hard_deadline=rec.created_at + rec.max_age_s * 1000,
        start_slot="remove",
    )
    assert result.ok


async def test_reserved_record_reads_back_with_genes_and_labels(
    store: SessionStore, clock: ManualClock
) -> None:
    rec = record("s1", clock, genes={"recall_threshold": 0.3}, labels={"team": "a"})
    await store.reserve(rec, ROOMY)
    assert await store.get("s1") == rec


async def test_reserving_a_taken_id_is_a_conflict(store: SessionStore, clock: ManualClock) -> None:
    await store.reserve(record("s1", clock), ROOMY)
    with pytest.raises(SessionConflict):
        await store.reserve(record("s1", clock), ROOMY)


@pytest.mark.parametrize(
    ("capacity", "limit"),
    [
        (
            Capacity(max_sessions=2, max_per_user=9, max_starts=9, start_timeout_ms=9000),
            "MAX_SESSIONS",
        ),
        (
            Capacity(max_sessions=9, max_per_user=2, max_starts=9, start_timeout_ms=9000),
            "MAX_SESSIONS_PER_USER",
        ),
        (
            Capacity(max_sessions=9, max_per_user=9, max_starts=2, start_timeout_ms=9000),
            "MAX_CONCURRENT_STARTS",
        ),
    ],
)
async def test_each_limit_refuses_the_session_over_it(
    store: SessionStore, clock: ManualClock, capacity: Capacity, limit: str
) -> None:
    await store.reserve(record("s1", clock), capacity)
    await store.reserve(record("s2", clock), capacity)
    with pytest.raises(CapacityExceeded) as caught:
        await store.reserve(record("s3", clock), capacity)
    assert caught.value.details["limit"] == limit
    assert "Retry-After" in caught.value.headers
    assert await store.get("s3") is None


async def test_per_user_limit_does_not_count_other_users(
    store: SessionStore, clock: ManualClock
) -> None:
    capacity = Capacity(max_sessions=9, max_per_user=1, max_starts=9, start_timeout_ms=9000)
    await store.reserve(record("s1", clock, user_id="alice"), capacity)
    await store.reserve(record("s2", clock, user_id="bob"), capacity)
    with pytest.raises(CapacityExceeded):
        await store.reserve(record("s3", clock, user_id="alice"), capacity)


async def test_a_start_slot_frees_when_ready_and_when_it_expires(
    store: SessionStore, clock: ManualClock
) -> None:
    capacity = Capacity(max_sessions=9, max_per_user=9, max_starts=1, start_timeout_ms=5000)
    await store.reserve(record("s1", clock), capacity)
    await store.transition(
        "s1", allowed=[SessionStatus.STARTING], to=SessionStatus.READY, start_slot="remove"
    )
    await store.reserve(record("s2", clock), capacity)  # s1's slot was freed by ready
    with pytest.raises(CapacityExceeded):
        await store.reserve(record("s3", clock), capacity)
    clock.advance(6)  # s2's manager died mid-start: its slot expires by itself
    await store.reserve(record("s3", clock), capacity)
    assert await store.expired_starts(clock.now_ms() + 10_000, 10) == ["s2", "s3"]


async def test_racing_reservations_never_exceed_the_global_limit(
    store: SessionStore, clock: ManualClock
) -> None:
    capacity = Capacity(max_sessions=7, max_per_user=100, max_starts=100, start_timeout_ms=9000)

    async def attempt(i: int) -> bool:
        try:
            await store.reserve(record(f"s{i}", clock, user_id=f"u{i % 5}"), capacity)
        except CapacityExceeded:
            return False
        return True

    results = await asyncio.gather(*(attempt(i) for i in range(60)))
    assert sum(results) == 7
    assert (await store.counts())["total"] == 7


async def test_transition_is_compare_and_set(store: SessionStore, clock: ManualClock) -> None:
    await store.reserve(record("s1", clock), ROOMY)
    first = await store.transition("s1", allowed=[SessionStatus.STARTING], to=SessionStatus.READY)
    second = await store.transition("s1", allowed=[SessionStatus.STARTING], to=SessionStatus.READY)
    assert first.ok
    assert first.previous == SessionStatus.STARTING
    assert not second.ok
    assert second.previous == SessionStatus.READY
    missing = await store.transition(
        "nope", allowed=[SessionStatus.READY], to=SessionStatus.HIBERNATING
    )
    assert not missing.ok
    assert missing.previous is None


async def test_only_one_of_racing_transitions_wins(store: SessionStore, clock: ManualClock) -> None:
    await make_ready(store, record("s1", clock), clock)
    results = await asyncio.gather(
        *(
            store.transition("s1", allowed=[SessionStatus.READY], to=to)
            for to in [SessionStatus.HIBERNATING, SessionStatus.TERMINATING] * 10
        )
    )
    assert sum(r.ok for r in results) == 1


async def test_transition_guarded_by_idle_due_loses_to_a_touch(
    store: SessionStore, clock: ManualClock
) -> None:
    await make_ready(store, record("s1", clock), clock)
    clock.advance(61)
    looked_at = clock.now_ms()
    assert await store.due_idle(looked_at, 10) == ["s1"]
    await store.touch("s1")  # a request arrives after the reaper looked
    reap = await store.transition(
        "s1",
        allowed=[SessionStatus.READY],
        to=SessionStatus.HIBERNATING,
        only_if_idle_due_at=looked_at,
    )
    assert not reap.ok
    assert (await store.get("s1")).status == SessionStatus.READY  # type: ignore[union-attr]


async def test_touch_moves_only_a_ready_sessions_idle_deadline(
    store: SessionStore, clock: ManualClock
) -> None:
    await store.reserve(record("starting", clock), ROOMY)
    assert await store.touch("starting") is None
    rec = record("s1", clock)
    await make_ready(store, rec, clock)
    clock.advance(30)
    idle, hard = await store.touch("s1")  # type: ignore[misc]
    assert idle == clock.now_ms() + 60_000
    assert hard == rec.created_at + 3_600_000
    got = await store.get("s1")
    assert got is not None
    assert got.last_activity == clock.now_ms()
    assert got.idle_deadline == idle


async def test_due_lists_come_oldest_first_and_limited(
    store: SessionStore, clock: ManualClock
) -> None:
    for i in range(5):
        await make_ready(store, record(f"s{i}", clock, idle_timeout_s=10 + i), clock)
    clock.advance(12.5)
    assert await store.due_idle(clock.now_ms(), 10) == ["s0", "s1", "s2"]
    assert await store.due_idle(clock.now_ms(), 2) == ["s0", "s1"]
    assert await store.due_hard(clock.now_ms(), 10) == []
    clock.advance(3600)
    assert len(await store.due_hard(clock.now_ms(), 10)) == 5


async def test_end_removes_everything_and_leaves_a_tombstone_with_ttl(
    store: SessionStore, clock: ManualClock, redis_url: str
) -> None:
    await make_ready(store, record("s1", clock, labels={"team": "a"}), clock)
    await store.save_snapshot("s1", b"{}")
    ended = await store.end("s1", "idle", 120, details={"note": "x"})
    assert ended.ok
    assert ended.previous == SessionStatus.READY
    assert await store.get("s1") is None
    assert await store.load_snapshot("s1") is None
    tombstone = await store.tombstone("s1")
    assert tombstone is not None
    assert tombstone.reason == "idle"
    assert tombstone.details == {"note": "x"}
    client = aioredis.Redis.from_url(redis_url)
    keys = sorted(k.decode() if isinstance(k, bytes) else k for k in await client.keys("t:*"))
    ttl = await client.pttl("t:tombstone:s1")
    kb_ttl = await client.pttl("t:kb:s1")
    await client.aclose()
    # No index, deadline, user set or label entry is left; the private knowledge base stays
    # claimed (no new session may name it) only while the tombstone lives.
    assert keys == ["t:kb:s1", "t:tombstone:s1"]
    assert 0 < ttl <= 120_000
    assert 0 < kb_ttl <= 120_000
    assert not (await store.end("s1", "idle", 120)).ok


async def test_every_key_the_store_writes_is_one_keys_spells(
    store: SessionStore, clock: ManualClock, redis_url: str
) -> None:
    await make_ready(store, record("s1", clock, labels={"team": "a"}), clock)
    await store.reserve(record("s2", clock, user_id="bob", labels={"tier": "gold"}), ROOMY)
    await store.save_snapshot("s1", b"{}")
    await store.acquire_leader("a", 10_000)
    await store.replica_beat("a", 10_000)
    await store.transition("s1", allowed=[SessionStatus.READY], to=SessionStatus.HIBERNATED)
    await store.end("s2", "deleted", 60)
    keys = store.keys
    spelled = {
        keys.sessions,
        keys.idle,
        keys.hard,
        keys.starts,
        keys.leader,
        keys.replicas,
        keys.snapshot_totals,
        *keys.all_statuses(),
        *(keys.session(i) for i in ("s1", "s2")),
        *(keys.snapshot(i) for i in ("s1", "s2")),
        *(keys.tombstone(i) for i in ("s1", "s2")),
        *(keys.user("default", u) for u in ("alice", "bob")),
        keys.tenant("default"),
        *(keys.knowledge_base(i) for i in ("s1", "s2")),
        keys.label("team", "a"),
        keys.label("tier", "gold"),
    }
    client = aioredis.Redis.from_url(redis_url)
    written = {k.decode() if isinstance(k, bytes) else k for k in await client.keys("*")}
    await client.aclose()
    assert written
    assert written <= spelled


async def test_end_reads_the_record_again_when_its_id_was_reused_meanwhile(
    store: SessionStore, clock: ManualClock, redis_url: str
) -> None:
    await make_ready(store, record("s1", clock, labels={"team": "new"}), clock)
    real = store.redis

    class StaleOnce:
        """Answers the first HMGET as the ended session that held the id before did."""

        def __init__(self) -> None:
            self.calls = 0

        async def hmget(self, key: str, names: list[str]) -> list[bytes | str | None]:
            self.calls += 1
            if self.calls == 1:
                return [b"alice", b'{"team":"old"}', b"default"]
            return list(await real.hmget(key, names))

    stale = StaleOnce()
    store.redis = stale  # type: ignore[assignment]
    ended = await store.end("s1", "deleted", 60)
    store.redis = real
    assert ended.ok
    assert stale.calls == 2
    client = aioredis.Redis.from_url(redis_url)
    left = {k.decode() if isinstance(k, bytes) else k for k in await client.keys("t:*")}
    await client.aclose()
    assert left == {"t:tombstone:s1", "t:kb:s1"}  # the live record's label index went too


async def test_end_restricted_to_statuses_refuses_others(
    store: SessionStore, clock: ManualClock
) -> None:
    await make_ready(store, record("s1", clock), clock)
    refused = await store.end("s1", "idle", 60, allowed=[SessionStatus.HIBERNATED])
    assert not refused.ok
    assert await store.get("s1") is not None


async def test_leader_lease_has_one_holder_until_it_expires_or_is_released(
    store: SessionStore, redis_url: str
) -> None:
    assert await store.acquire_leader("a", 10_000)
    assert not await store.acquire_leader("b", 10_000)
    assert await store.renew_leader("a", 10_000)
    assert not await store.renew_leader("b", 10_000)
    await store.release_leader("b")  # not the holder: no effect
    assert await store.leader() == "a"
    await store.release_leader("a")
    assert await store.acquire_leader("b", 50)
    await asyncio.sleep(0.1)
    assert await store.acquire_leader("c", 10_000)


async def test_only_the_last_live_replica_to_leave_sees_no_others(
    store: SessionStore, redis_url: str
) -> None:
    assert await store.replica_beat("a", 10_000) == 1
    assert await store.replica_beat("b", 10_000) == 2
    assert await store.replica_beat("a", 10_000) == 2  # a heartbeat refreshes, never adds
    # Two replicas stopping one after the other: the first leaves the sessions to the second.
    assert await store.replica_leave("a", 10_000) == 1
    assert await store.replica_leave("b", 10_000) == 0
    assert await store.replicas() == []


async def test_a_replica_silent_past_the_stale_time_no_longer_counts(
    store: SessionStore, redis_url: str
) -> None:
    await store.replica_beat("killed", 10_000)
    await store.replica_beat("alive", 10_000)
    # What a replica killed a minute ago leaves behind: its last heartbeat, a minute old.
    client = aioredis.Redis.from_url(redis_url)
    (seconds, micros) = await client.time()
    await client.zadd(store.keys.replicas, {"killed": seconds * 1000 + micros // 1000 - 60_000})
    await client.aclose()
    assert set(await store.replicas()) == {"killed", "alive"}
    assert await store.replica_leave("alive", 10_000) == 0
    assert await store.replicas() == []


async def test_iter_status_walks_every_id_in_batches(
    store: SessionStore, clock: ManualClock
) -> None:
    for i in range(25):
        clock.advance(0.001)
        await store.reserve(record(f"s{i:02d}", clock), ROOMY)
    seen = [sid async for sid in store.iter_status(SessionStatus.STARTING, batch=7)]
    assert seen == [f"s{i:02d}" for i in range(25)]


async def test_a_dead_redis_gives_store_unavailable_quickly(clock: ManualClock) -> None:
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    client = aioredis.Redis(
        unix_socket_path="/nonexistent/redis.sock",
        socket_connect_timeout=0.5,
        socket_timeout=0.5,
        retry=Retry(NoBackoff(), 1),
    )
    store = SessionStore(client, "t:", clock)
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(StoreUnavailable):
        await store.get("s1")
    assert loop.time() - began < 2
    await client.aclose()


# -- admin listing -------------------------------------------------------------------------------


async def seed(store: SessionStore, clock: ManualClock, n: int) -> list[SessionRecord]:
    """``n`` ready sessions, several per millisecond, over 3 users, 2 teams, 2 statuses."""
    records = []
    for i in range(n):
        if i % 3 == 0:
            clock.advance(0.001)
        rec = record(
            f"{random.getrandbits(64):016x}",
            clock,
            user_id=f"user{i % 3}",
            labels={"team": "red" if i % 2 else "blue", "tier": "gold" if i % 5 == 0 else "free"},
        )
        await make_ready(store, rec, clock)
        if i % 4 == 0:
            await store.transition(
                rec.session_id, allowed=[SessionStatus.READY], to=SessionStatus.HIBERNATED
            )
        records.append(rec)
    return sorted(records, key=lambda r: (r.created_at, r.session_id))


async def pages(store: SessionStore, **filters: Any) -> tuple[list[str], int]:
    ids: list[str] = []
    cursor = None
    count = 0
    while True:
        page = await store.page(limit=500, cursor=cursor, **filters)
        count += 1
        assert len(page.records) <= 500
        ids += [r.session_id for r in page.records]
        if page.next_cursor is None:
            return ids, count
        cursor = page.next_cursor


async def test_listing_pages_through_1200_sessions_in_creation_order(
    store: SessionStore, clock: ManualClock
) -> None:
    records = await seed(store, clock, 1200)
    ids, count = await pages(store)
    assert ids == [r.session_id for r in records]
    assert count == 3


@pytest.mark.parametrize(
    "filters",
    [
        {"status": SessionStatus.HIBERNATED},
        {"user_id": "user1"},
        {"label": ("team", "red")},
        {"label": ("tier", "gold"), "status": SessionStatus.READY},
        {"user_id": "user2", "label": ("team", "blue"), "status": SessionStatus.READY},
    ],
)
async def test_listing_filters_return_exactly_the_matching_sessions(
    store: SessionStore, clock: ManualClock, filters: dict[str, Any]
) -> None:
    await seed(store, clock, 1200)
    everything = [r for r in (await store.page(limit=10_000)).records]
    expected = [
        r.session_id
        for r in everything
        if ("status" not in filters or r.status == filters["status"])
        and ("user_id" not in filters or r.user_id == filters["user_id"])
        and ("label" not in filters or r.labels.get(filters["label"][0]) == filters["label"][1])
    ]
    ids, _ = await pages(store, **filters)
    assert ids == expected
    assert expected


async def test_cursor_stays_valid_while_sessions_come_and_go(
    store: SessionStore, clock: ManualClock
) -> None:
    records = await seed(store, clock, 600)
    first = await store.page(limit=200)
    seen = [r.session_id for r in first.records]
    # The session the cursor points at, and others on both sides, end; new ones arrive.
    for gone in (records[199], records[10], records[400]):
        await store.end(gone.session_id, "deleted", 60)
    newer = await seed(store, clock, 5)
    cursor = first.next_cursor
    while cursor is not None:
        page = await store.page(limit=200, cursor=cursor)
        seen += [r.session_id for r in page.records]
        cursor = page.next_cursor
    expected = [r.session_id for r in records[:200]]
    expected += [r.session_id for r in records[200:] if r is not records[400]]
    expected += [r.session_id for r in newer]
    assert seen == expected


async def test_a_foreign_cursor_is_rejected_by_decode(store: SessionStore) -> None:
    from session_manager.store import decode_cursor

    assert decode_cursor("not-a-cursor!") is None
    assert decode_cursor(encode_cursor("0000000000001:abc")) == "0000000000001:abc"


async def test_every_status_change_and_end_is_published(
    store: SessionStore, clock: ManualClock
) -> None:
    changes = store.changes()
    assert await anext(changes) == ""  # subscribed
    await make_ready(store, record("s1", clock), clock)
    await store.touch("s1")  # not a status change: not published
    await store.end("s1", "deleted", 60)
    seen = [await asyncio.wait_for(anext(changes), 5) for _ in range(2)]
    await changes.aclose()
    assert seen == ["s1", "s1"]


async def test_batch_reads_answer_per_id(store: SessionStore, clock: ManualClock) -> None:
    await make_ready(store, record("s1", clock), clock)
    await store.reserve(record("s2", clock), ROOMY)
    assert await store.exists_many(["s1", "nope", "s2"]) == [True, False, True]
    s1, nope, s2 = await store.get_many(["s1", "nope", "s2"])
    assert s1 is not None
    assert s1.status == SessionStatus.READY
    assert s1.handle is not None
    assert s1.handle.endpoint == "http://127.0.0.1:9"
    assert nope is None
    assert s2 is not None
    assert s2.handle is None  # still starting: no processor yet
    assert await store.exists_many([]) == []
