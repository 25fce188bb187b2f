"""Reaper pass cost: 1,000 idle sessions (50 with real processor processes), one pass.

The other 950 records point at a few extra processor processes (so every hibernation really
reads a ``GET /state``) but name no process of their own, so removing "their" processor is a
no-op and the shared processors survive the pass.
Time is moved with a manual clock, not slept. Redis commands are counted from
``INFO commandstats`` before and after the pass. Run: ``python bench/reaper.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import table, write

from session_manager.backends.process import ProcessBackend
from session_manager.metrics import Metrics
from session_manager.models import SessionRecord, SessionStatus
from session_manager.reaper import Reaper
from session_manager.redis_client import connect_redis
from session_manager.sessions import NewSession, Sessions
from session_manager.settings import Settings
from session_manager.store import Capacity, SessionStore
from tests.processes import processor_spec

SHARED = 10
"""Processor processes the records without a process of their own read their state from."""


class ManualClock:
    """Time that moves only when told (``Clock`` protocol)."""

    def __init__(self) -> None:
        self.ms = time.time_ns() // 1_000_000

    def now_ms(self) -> int:
        return self.ms


async def commands(store: SessionStore) -> tuple[int, int]:
    """All commands (Lua-internal ones included) and client round trips (scripts count once)."""
    stats: dict[str, Any] = await store.redis.info("commandstats")
    calls = {name: int(v["calls"]) for name, v in stats.items()}
    total = sum(calls.values())
    scripts = ("cmdstat_evalsha", "cmdstat_eval", "evalsha", "eval")
    return total, sum(calls.get(name, 0) for name in scripts)


async def run(total: int, real: int, batch: int, concurrency: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kato-reaper-bench-") as workdir:
        settings = Settings.from_env(
            {
                "DATA_DIR": workdir,
                "ADMIN_TOKEN": secrets.token_urlsafe(24),
                "MANAGER_ID": f"reaper-bench-{secrets.token_hex(3)}",
                "MAX_SESSIONS": str(total + 10),
                "MAX_SESSIONS_PER_USER": str(total + 10),
                "REAP_BATCH_SIZE": str(batch),
                "REAP_CONCURRENCY": str(concurrency),
                "IDLE_TIMEOUT_S": "900",
            }
        )
        clock = ManualClock()
        connection = await connect_redis(settings)
        store = SessionStore(connection.client, settings.redis_prefix, clock)
        backend = ProcessBackend.from_settings(settings)
        metrics = Metrics()
        sessions = Sessions(
            settings=settings, store=store, backend=backend, metrics=metrics, clock=clock
        )
        reaper = Reaper(
            settings=settings, store=store, sessions=sessions, metrics=metrics, clock=clock
        )
        try:
            started = time.perf_counter()
            for n in range(real):
                await sessions.create(NewSession(user_id=f"user{n % 10}"))
            start_s = time.perf_counter() - started
            shared_processors = [
                await backend.start(processor_spec(f"shared-{n}")) for n in range(SHARED)
            ]
            roomy = Capacity(
                max_sessions=total + 10,
                max_per_user=total + 10,
                max_starts=total + 10,
                start_timeout_ms=60_000,
            )
            now = clock.now_ms()
            for n in range(total - real):
                shared = shared_processors[n % SHARED]
                record = SessionRecord.starting(
                    f"bench-{n:05d}", f"user{n % 10}", now, idle_timeout_s=900, max_age_s=86400
                )
                await store.reserve(record, roomy)
                await store.transition(
                    record.session_id,
                    allowed=[SessionStatus.STARTING],
                    to=SessionStatus.READY,
                    fields={"backend": "process", "ref": "999999999", "endpoint": shared.endpoint},
                    idle_deadline=now + 900_000,
                    hard_deadline=now + 86_400_000,
                    start_slot="remove",
                )
            clock.ms += 901_000
            before, scripts_before = await commands(store)
            report = await reaper.reap_once()
            after, scripts_after = await commands(store)
            reaped = len(report.hibernated) + sum(len(v) for v in report.ended.values())
            return {
                "sessions": total,
                "with_processes": real,
                "reaped": reaped,
                "failed": len(report.failed),
                "pass_s": report.duration_ms / 1000,
                "per_session_ms": report.duration_ms / max(reaped, 1),
                "redis_commands": after - before,
                "commands_per_session": (after - before) / max(reaped, 1),
                "scripts_per_session": (scripts_after - scripts_before) / max(reaped, 1),
                "batch": batch,
                "concurrency": concurrency,
                "create_real_s": start_s,
            }
        finally:
            for handle in await backend.list_owned():
                await backend.stop(handle)
            await backend.close()
            await sessions.aclose()
            await connection.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=50)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=Settings().reap_concurrency)
    args = parser.parse_args()
    row = asyncio.run(run(args.sessions, args.processes, args.batch, args.concurrency))
    print(table("reaper: one pass over idle sessions (REAP_ACTION=hibernate)", [row]))
    print(f"results: {write('reaper', row)}")


if __name__ == "__main__":
    main()
