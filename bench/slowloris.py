"""Slowloris against the manager's edge: latency of ``/health`` and a session while N slow clients
hold connections open with unfinished headers.

Workload: ``python -m session_manager`` (process backend, embedded Redis, one session with a
real processor); N connections each send a request line and one header, then nothing. While
they are open, ``ROUNDS`` sequential rounds of ``GET /health`` + ``GET /session/<id>/stm``
(token) are timed; the same rounds without slow clients are the baseline. The header timeout
is set above the run's length, so every slow connection stays open throughout.
Run: ``python bench/slowloris.py [--connections 1000] [--rounds 200]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _manager import api_keys, running_manager
from _report import mean_ms, percentiles, table, write

KEY = "bench-slowloris-key-0123456789"
ADMIN = "bench-slowloris-admin-0123456789"


def create_session(url: str) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"{url}/session/create",
        data=json.dumps({"user_id": "bench"}).encode(),
        headers={"Authorization": f"Bearer {KEY}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as reply:  # noqa: S310
        session: dict[str, Any] = json.loads(reply.read())
        return session


async def _get(port: int, path: str, token: str | None) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    auth = f"authorization: Bearer {token}\r\n" if token else ""
    writer.write(f"GET {path} HTTP/1.1\r\nhost: x\r\n{auth}connection: close\r\n\r\n".encode())
    reply = await reader.read()
    writer.close()
    return int(reply.split(b" ", 2)[1])


async def rounds(port: int, session: dict[str, Any], count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        began = time.perf_counter()
        health = await _get(port, "/health", None)
        stm = await _get(port, f"/session/{session['session_id']}/stm", session["token"])
        latencies.append(time.perf_counter() - began)
        if (health, stm) != (200, 200):
            raise RuntimeError(f"answered {health} and {stm}")
    return latencies


async def measure(port: int, session: dict[str, Any], connections: int, count: int) -> list[float]:
    writers = []
    try:
        for _ in range(connections):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /health HTTP/1.1\r\nhost: x\r\n")
            writers.append(writer)
        await asyncio.gather(*(w.drain() for w in writers))
        return await rounds(port, session, count)
    finally:
        for writer in writers:
            writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kato-bench-slowloris-") as tmp:
        env = {
            "API_KEYS": api_keys(KEY),
            "HEADER_TIMEOUT_S": "600",
            "MANAGER_ID": f"bench-slowloris-{os.getpid()}",
        }
        with running_manager(Path(tmp), ADMIN, **env) as url:
            port = int(url.rsplit(":", 1)[1])
            session = create_session(url)
            baseline = asyncio.run(rounds(port, session, args.rounds))
            loaded = asyncio.run(measure(port, session, args.connections, args.rounds))
    rows = [
        {"slow_connections": 0, "rounds": args.rounds, "mean_ms": mean_ms(baseline)}
        | percentiles(baseline),
        {"slow_connections": args.connections, "rounds": args.rounds, "mean_ms": mean_ms(loaded)}
        | percentiles(loaded),
    ]
    print(table("GET /health + GET /session/<id>/stm per round (new connection each)", rows))
    path = write(
        "slowloris",
        {
            "workload": "one round = GET /health + GET /session/<id>/stm, sequential, each on a"
            " new loopback connection; slow connections send a request line and one header"
            " and nothing more (HEADER_TIMEOUT_S=600 so they stay open)",
            "rows": rows,
        },
    )
    print(f"written {path}")


if __name__ == "__main__":
    main()
