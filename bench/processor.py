"""Processor service speed over loopback: one client's latency, then 8 clients' throughput.

Starts ``python -m processor_image`` as a real process. Measures ``POST /observe`` (empty
knowledge base, and with 200 learned patterns), ``GET /predictions`` and a WebSocket observe
round trip for one client, then observe throughput with 8 concurrent clients (bounded by count
and time). Run: ``python bench/processor.py [--requests 3000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from _report import percentiles, table, write
from websockets.sync.client import connect

from tests.processes import start_processor

VOCABULARY = [f"w{i}" for i in range(50)]


def observe_latency(client: httpx.Client, requests: int, rng: random.Random) -> list[float]:
    samples = []
    for n in range(requests):
        if n % 5 == 0:
            client.post("/clear-stm")
        body = {"strings": [rng.choice(VOCABULARY)], "unique_id": f"o{n}"}
        started = time.perf_counter()
        response = client.post("/observe", json=body)
        samples.append(time.perf_counter() - started)
        response.raise_for_status()
    return samples


def learn_patterns(client: httpx.Client, count: int, rng: random.Random) -> None:
    observations = []
    for _ in range(count):
        observations.extend({"strings": [rng.choice(VOCABULARY)]} for _ in range(rng.randint(3, 6)))
        client.post("/observe-sequence", json={"observations": observations}).raise_for_status()
        client.post("/learn").raise_for_status()
        observations = []


def predictions_latency(client: httpx.Client, requests: int) -> tuple[list[float], int]:
    client.post("/clear-stm")
    client.post("/observe", json={"strings": ["w1"]})
    client.post("/observe", json={"strings": ["w2"]})
    samples = []
    size = 0
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get("/predictions")
        samples.append(time.perf_counter() - started)
        size = len(response.json()["predictions"])
    return samples, size


def ws_latency(url: str, requests: int, rng: random.Random) -> list[float]:
    samples = []
    with connect(url.replace("http", "ws") + "/ws") as socket:
        for n in range(requests):
            if n % 5 == 0:
                socket.send(json.dumps({"type": "clear_stm"}))
                socket.recv()
            message = {
                "type": "observe",
                "payload": {"strings": [rng.choice(VOCABULARY)], "vectors": [], "emotives": {}},
            }
            started = time.perf_counter()
            socket.send(json.dumps(message))
            socket.recv()
            samples.append(time.perf_counter() - started)
    return samples


async def throughput(url: str, clients: int, requests: int, limit_s: float) -> tuple[float, int]:
    """Observes per second with ``clients`` concurrent connections; stops at a count or time."""
    done = 0
    deadline = time.perf_counter() + limit_s

    async def one(client: httpx.AsyncClient, index: int) -> None:
        nonlocal done
        n = 0
        while done < requests and time.perf_counter() < deadline:
            n += 1
            response = await client.post("/observe", json={"strings": [f"c{index}-{n % 7}"]})
            response.raise_for_status()
            done += 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits) as client:
        await client.post("/clear-all")
        started = time.perf_counter()
        await asyncio.gather(*(one(client, i) for i in range(clients)))
        elapsed = time.perf_counter() - started
    return done / elapsed, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--limit-s", type=float, default=20.0)
    args = parser.parse_args()
    rng = random.Random(3)
    rows = []
    with start_processor("bench") as running, httpx.Client(base_url=running.url) as client:
        observe_latency(client, 200, rng)  # warm up
        client.post("/clear-all")
        rows.append(
            {
                "measure": "POST /observe (empty KB)",
                **percentiles(observe_latency(client, args.requests, rng)),
            }
        )
        learn_patterns(client, 200, rng)
        rows.append(
            {
                "measure": "POST /observe (200 patterns)",
                **percentiles(observe_latency(client, args.requests, rng)),
            }
        )
        samples, size = predictions_latency(client, args.requests)
        rows.append({"measure": f"GET /predictions ({size} predictions)", **percentiles(samples)})
        rows.append(
            {
                "measure": "WS observe round trip (200 patterns)",
                **percentiles(ws_latency(running.url, args.requests, rng)),
            }
        )
        rate, count = asyncio.run(
            throughput(running.url, args.clients, args.requests * 3, args.limit_s)
        )
    print(table("processor service over loopback, one client (ms)", rows))
    print(f"observe throughput, {args.clients} clients: {rate:,.0f} req/s ({count} requests)")
    path = write(
        "processor",
        {
            "latency": rows,
            "throughput": {"clients": args.clients, "requests": count, "per_s": rate},
        },
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
