"""What the ``kato_sessions`` client costs over bare httpx: proxied ``POST /observe``.

One manager process (process backend, embedded Redis), one session. The same observes are
sent by a bare ``httpx.Client`` (hand-built headers and JSON) and by ``kato_sessions.Session``
(typed reply decoded, retry loop), alternating in rounds so that both see the same machine
load; also the async client, and the WebSocket helper's pipelined ``observe_stream`` against
one-by-one WebSocket observes. Run: ``python bench/client.py [--rounds 10 --per-round 100]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from kato_sessions import AsyncClient, Client

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _manager import api_keys, running_manager
from _report import percentiles, table, write


def sync_rounds(url: str, key: str, rounds: int, per_round: int) -> dict[str, list[float]]:
    """Bare httpx and the blocking client, one round each in turn."""
    samples: dict[str, list[float]] = {"httpx": [], "Client": []}
    with Client(url, api_key=key) as client, httpx.Client(base_url=url) as bare:
        session = client.create("bench")
        path = f"/session/{session.session_id}/observe"
        headers = {"Authorization": f"Bearer {session.token}"}
        for n in range(rounds):
            for name in ("httpx", "Client") if n % 2 == 0 else ("Client", "httpx"):
                for i in range(per_round):
                    started = time.perf_counter()
                    if name == "httpx":
                        reply = bare.post(path, json={"strings": [f"s{i % 7}"]}, headers=headers)
                        reply.raise_for_status()
                        reply.json()
                    else:
                        session.observe([f"s{i % 7}"])
                    samples[name].append(time.perf_counter() - started)
        session.delete()
    return samples


async def async_rounds(url: str, key: str, rounds: int, per_round: int) -> dict[str, list[float]]:
    """The async client over HTTP; WebSocket observes one by one and pipelined (per message)."""
    samples: dict[str, list[float]] = {"AsyncClient": [], "ws one by one": [], "ws pipelined": []}
    async with (
        AsyncClient(url, api_key=key) as client,
        await client.create("bench") as session,
        session.websocket() as ws,
    ):
        for _ in range(rounds):
            for i in range(per_round):
                started = time.perf_counter()
                await session.observe([f"s{i % 7}"])
                samples["AsyncClient"].append(time.perf_counter() - started)
            for i in range(per_round):
                started = time.perf_counter()
                await ws.observe([f"s{i % 7}"])
                samples["ws one by one"].append(time.perf_counter() - started)
            started = time.perf_counter()
            count = 0
            async for _ in ws.observe_stream([f"s{i % 7}"] for i in range(per_round)):
                count += 1
            per_message = (time.perf_counter() - started) / max(1, count)
            samples["ws pipelined"].extend([per_message] * count)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--per-round", type=int, default=100)
    args = parser.parse_args()
    admin, key = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    env = {"MANAGER_ID": f"client-bench-{secrets.token_hex(3)}", "API_KEYS": api_keys(key)}
    with (
        tempfile.TemporaryDirectory(prefix="kato-client-bench-") as workdir,
        running_manager(Path(workdir), admin, **env) as url,
    ):
        samples = sync_rounds(url, key, args.rounds, args.per_round)
        samples.update(asyncio.run(async_rounds(url, key, args.rounds, args.per_round)))
    load = os.getloadavg()
    rows: list[dict[str, Any]] = [
        {"sender": name, "observes": len(values), **percentiles(values)}
        for name, values in samples.items()
    ]
    title = f"proxied POST /observe by sender (load average {load[0]:.1f} {load[1]:.1f})"
    print(table(title, rows))
    path = write("client", {"rows": rows, "load_average": load})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
