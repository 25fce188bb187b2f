"""``POST /sessions`` (v3 API) against ``POST /session/create``, warm pool on (issue 16).

One real manager process (embedded Redis, memory store, process backend with the fork server,
``WARM_POOL_SIZE=4``, ``KATO_V3_API=on``). Rounds alternate the two creates, one of each per
round, each timed at the client once the pool holds a processor again (untimed wait: an
arrival rate the pool is sized for). Both answer once the session's processor is ready. The
machine's load average is printed beside the figures (the machine is shared).

Run: ``python bench/v3_create.py [--rounds 40]``.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _manager import api_keys, running_manager
from _report import percentiles, table, write
from create import _wait_for_pool

WARM_SIZE = 4


def run(rounds: int) -> dict[str, Any]:
    admin_token = secrets.token_urlsafe(24)
    key = secrets.token_urlsafe(24)
    admin = {"Authorization": f"Bearer {admin_token}"}
    creator = {"Authorization": f"Bearer {key}"}
    samples: dict[str, list[float]] = {"v3 POST /sessions": [], "POST /session/create": []}
    with (
        tempfile.TemporaryDirectory(prefix="kato-v3-bench-") as workdir,
        running_manager(
            Path(workdir),
            admin_token,
            API_KEYS=api_keys(key),
            MANAGER_ID=f"bench-v3-{uuid.uuid4().hex[:8]}",
            WARM_POOL_SIZE=str(WARM_SIZE),
            PROCESS_SPAWN="fork",
            MAX_SESSIONS=str(2 * rounds + 10),
            MAX_SESSIONS_PER_USER=str(2 * rounds + 10),
            SHUTDOWN_ACTION="delete",
            KATO_V3_API="on",
        ) as url,
        httpx.Client(base_url=url, trust_env=False, timeout=120) as client,
    ):
        loads: list[float] = []
        for i in range(rounds):
            order = list(samples) if i % 2 == 0 else list(reversed(samples))
            for kind in order:
                _wait_for_pool(client, admin, 1)
                began = time.perf_counter()
                if kind.startswith("v3"):
                    reply = client.post("/v3/sessions", json={"node_id": "bench"}, headers=creator)
                    ok = reply.status_code == 200
                else:
                    reply = client.post("/session/create", json={"user_id": "u"}, headers=creator)
                    ok = reply.status_code == 201
                samples[kind].append(time.perf_counter() - began)
                if not ok:
                    raise RuntimeError(f"{kind}: {reply.status_code} {reply.text}")
            loads.append(os.getloadavg()[0])
    return {
        "rounds": rounds,
        "warm_pool_size": WARM_SIZE,
        "load_average_1m": {"min": min(loads), "max": max(loads)},
        "creates": {kind: percentiles(values) for kind, values in samples.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    result = run(args.rounds)
    load = result["load_average_1m"]
    rows = [
        {"create": kind, **{k: v for k, v in figures.items() if k != "p99_ms"}}
        for kind, figures in result["creates"].items()
    ]
    title = (
        f"create -> ready, warm pool {WARM_SIZE}, {args.rounds} interleaved rounds "
        f"(load average {load['min']:.1f}-{load['max']:.1f} on {os.cpu_count()} cores)"
    )
    print(table(title, rows))
    print(f"wrote {write('v3_create', result)}")


if __name__ == "__main__":
    main()
