"""Capacity model inputs from Redis: bytes and commands per session and per request.

On a real (embedded) Redis, through the manager's own store code: ``--sessions`` records are
reserved and made ready (as a create does), a journal entry is appended for each (one
acknowledged ``POST /observe``), then each is touched (the activity tracker's write). Redis's
``used_memory`` and ``INFO commandstats`` are read before and after every phase, so the figures
are what the store really sends and keeps. For ``docs/scaling.md``.
Run: ``python bench/capacity.py [--sessions 5000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import msgspec
from _report import table, write

from session_manager.clock import SystemClock
from session_manager.models import SessionRecord, SessionStatus
from session_manager.redis_client import connect_redis
from session_manager.sessions import hash_token
from session_manager.settings import Settings
from session_manager.store import Capacity, SessionStore
from session_manager.store.journal import JournalEntry

ROOMY = Capacity(max_sessions=10**9, max_per_user=10**9, max_starts=10**9, start_timeout_ms=60_000)
OBSERVE = msgspec.json.encode({"strings": ["w1", "w2", "w3"], "emotives": {}, "unique_id": "x"})


def _record(clock: SystemClock, i: int) -> SessionRecord:
    return SessionRecord.starting(
        uuid.uuid4().hex,
        f"user{i % 50}",
        clock.now_ms(),
        idle_timeout_s=900,
        max_age_s=86400,
        token_hash=hash_token(f"token{i}"),
        genes={"recall_threshold": 0.2},
        labels={"team": f"t{i % 10}"},
    )


async def _stats(store: SessionStore) -> tuple[int, int]:
    """(used_memory bytes, commands processed so far, the INFO calls excluded)."""
    memory = await store.redis.info("memory")
    commands = await store.redis.info("commandstats")
    calls = sum(v["calls"] for k, v in commands.items() if k != "cmdstat_info")
    return int(memory["used_memory"]), int(calls)


async def main(count: int) -> dict[str, Any]:
    workdir = tempfile.mkdtemp(prefix="kato-bench-capacity-")
    settings = Settings.from_env({"DATA_DIR": workdir, "ADMIN_TOKEN": "b" * 20})
    redis = await connect_redis(settings)
    clock = SystemClock()
    store = SessionStore(redis.client, "kato:", clock)
    await redis.client.flushdb()
    try:
        records = [_record(clock, i) for i in range(count)]
        base_mem, base_calls = await _stats(store)
        for i, rec in enumerate(records):
            await store.reserve(rec, ROOMY)
            now = clock.now_ms()
            await store.transition(
                rec.session_id,
                allowed=[SessionStatus.STARTING],
                to=SessionStatus.READY,
                fields={
                    "endpoint": f"http://kato-{rec.session_id}-abc123:8000",
                    "ref": f"{i:025d}",
                    "backend": "swarm",
                    "node": f"node-{i % 3}",
                },
                idle_deadline=now + 900_000,
                hard_deadline=now + 86_400_000,
                start_slot="remove",
            )
        ready_mem, ready_calls = await _stats(store)
        for rec in records:
            entry = JournalEntry(1, "POST", "/observe", "", OBSERVE)
            await store.journal.append(rec.session_id, entry)
        journal_mem, journal_calls = await _stats(store)
        for rec in records:
            await store.touch(rec.session_id)
        _, touch_calls = await _stats(store)
        return {
            "sessions": count,
            "bytes_per_ready_session": (ready_mem - base_mem) / count,
            "commands_per_create": (ready_calls - base_calls) / count,
            "bytes_per_journal_entry": (journal_mem - ready_mem) / count,
            "commands_per_journaled_write": (journal_calls - ready_calls) / count,
            "commands_per_touch": (touch_calls - journal_calls) / count,
        }
    finally:
        await redis.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=5000)
    row = asyncio.run(main(parser.parse_args().sessions))
    print(table("capacity: Redis per session and per request", [row]))
    print(f"results: {write('capacity', row)}")
