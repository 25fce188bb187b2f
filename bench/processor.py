"""Processor service speed over loopback: one client's latency, then 8 clients' throughput.

Starts ``python -m processor_image`` as a real process. For one client it measures
``POST /observe`` (empty knowledge base, and with 200 learned patterns), ``GET /predictions`` and
a WebSocket observe round trip; then observe throughput with 8 concurrent clients (bounded by
count and time).

The dense workload (issue 14; a fresh processor, memory store): each observation is one event of
2-4 distinct symbols from a 50-symbol vocabulary, ``GET /predictions`` after every 5th and
``POST /learn`` after every 10th, so knowledge grows to 200 patterns of ~10 events over 2,000
observations and almost every pattern matches; timed as one stream, as a client would see it.

The 200 patterns are 3-6 events drawn from 50 words, so an observation of two or more symbols
matches dozens of them (the table shows how many predictions each observe computed): that cost
is the engine's. The latency client is a keep-alive ``http.client`` connection and the
throughput clients are raw asyncio streams, because client and server share the 2 cores and a
heavier client would measure itself; one row repeats the observe with ``httpx`` to show that
difference. The dense stream runs once per engine core (``--cores``, default both: a processor
started with ``KATO_ENGINE_CORE`` set to each). Run: ``python bench/processor.py [--requests 3000]
[--dense-observations 2000] [--dense-only] [--cores python,compiled]``.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from _report import percentiles, table, write
from websockets.sync.client import connect

from tests.processes import start_processor

VOCABULARY = [f"w{i}" for i in range(50)]
JSON_HEADERS = {"content-type": "application/json"}


class Connection:
    """One keep-alive HTTP/1.1 connection (stdlib), so the client adds little to the timing.

    Each phase opens its own: the server closes a connection that idles for 5 s.
    """

    def __init__(self, port: int) -> None:
        self._http = http.client.HTTPConnection("127.0.0.1", port)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """Send one request; a non-200 reply stops the benchmark."""
        content = None if body is None else json.dumps(body).encode()
        self._http.request(method, path, content, JSON_HEADERS)
        response = self._http.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{method} {path}: {response.status} {data[:200]!r}")
        return json.loads(data)

    def close(self) -> None:
        """Close the connection."""
        self._http.close()


def observe_bodies(count: int, rng: random.Random) -> list[dict[str, Any]]:
    """One word per observation; STM is cleared before every fifth (1-5 events deep)."""
    return [{"strings": [rng.choice(VOCABULARY)], "unique_id": f"o{n}"} for n in range(count)]


def observe_latency(conn: Connection, bodies: list[dict[str, Any]]) -> list[float]:
    samples = []
    for n, body in enumerate(bodies):
        if n % 5 == 0:
            conn.call("POST", "/clear-stm")
        started = time.perf_counter()
        conn.call("POST", "/observe", body)
        samples.append(time.perf_counter() - started)
    return samples


def observe_latency_httpx(url: str, bodies: list[dict[str, Any]]) -> list[float]:
    samples = []
    with httpx.Client(base_url=url) as client:
        for n, body in enumerate(bodies):
            if n % 5 == 0:
                client.post("/clear-stm").raise_for_status()
            started = time.perf_counter()
            response = client.post("/observe", json=body)
            samples.append(time.perf_counter() - started)
            response.raise_for_status()
    return samples


def predictions_per_observe(conn: Connection, bodies: list[dict[str, Any]]) -> float:
    """Mean number of predictions the measured observes compute (untimed; warms the server)."""
    total = 0
    for n, body in enumerate(bodies):
        if n % 5 == 0:
            conn.call("POST", "/clear-stm")
        conn.call("POST", "/observe", body)
        total += len(conn.call("GET", "/predictions")["predictions"])
    return total / len(bodies)


def learn_patterns(conn: Connection, count: int, rng: random.Random) -> None:
    for _ in range(count):
        events = [{"strings": [rng.choice(VOCABULARY)]} for _ in range(rng.randint(3, 6))]
        conn.call("POST", "/observe-sequence", {"observations": events})
        conn.call("POST", "/learn")


def predictions_latency(conn: Connection, requests: int) -> tuple[list[float], int]:
    conn.call("POST", "/clear-stm")
    conn.call("POST", "/observe", {"strings": ["w1"]})
    conn.call("POST", "/observe", {"strings": ["w2"]})
    samples = []
    size = 0
    for _ in range(requests):
        started = time.perf_counter()
        size = len(conn.call("GET", "/predictions")["predictions"])
        samples.append(time.perf_counter() - started)
    return samples, size


def ws_latency(url: str, bodies: list[dict[str, Any]]) -> list[float]:
    samples = []
    with connect(url.replace("http", "ws") + "/ws") as socket:
        for n, body in enumerate(bodies):
            if n % 5 == 0:
                socket.send(json.dumps({"type": "clear_stm"}))
                socket.recv()
            message = json.dumps(
                {"type": "observe", "payload": {**body, "vectors": [], "emotives": {}}}
            )
            started = time.perf_counter()
            socket.send(message)
            reply = socket.recv()
            samples.append(time.perf_counter() - started)
            if '"observation_result"' not in str(reply):
                raise RuntimeError(f"WS observe failed: {reply!r}")
    return samples


async def throughput(port: int, clients: int, requests: int, limit_s: float) -> tuple[float, int]:
    """Observes per second from ``clients`` keep-alive connections; stops at a count or time."""
    done = 0
    deadline = time.perf_counter() + limit_s

    async def one(index: int) -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        n = 0
        try:
            while done < requests and time.perf_counter() < deadline:
                n += 1
                body = json.dumps({"strings": [f"c{index}-{n % 7}"]}).encode()
                writer.write(
                    b"POST /observe HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n%s" % (len(body), body)
                )
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"observe failed: {head!r}")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                done += 1
        finally:
            writer.close()
            await writer.wait_closed()

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(clients)))
    return done / (time.perf_counter() - started), done


DENSE_VOCABULARY = [f"s{i}" for i in range(50)]


def dense_stream(port: int, observations: int, rng: random.Random) -> dict[str, Any]:
    """The dense workload on an empty processor: per-request samples and requests per second."""
    conn = Connection(port)
    conn.call("POST", "/clear-all")
    samples: dict[str, list[float]] = {"observe": [], "predictions": [], "learn": []}
    predicted = 0
    started = time.perf_counter()
    for n in range(1, observations + 1):
        event = rng.sample(DENSE_VOCABULARY, rng.randint(2, 4))
        begin = time.perf_counter()
        conn.call("POST", "/observe", {"strings": event, "unique_id": f"d{n}"})
        samples["observe"].append(time.perf_counter() - begin)
        if n % 5 == 0:
            begin = time.perf_counter()
            predicted += len(conn.call("GET", "/predictions")["predictions"])
            samples["predictions"].append(time.perf_counter() - begin)
        if n % 10 == 0:
            begin = time.perf_counter()
            conn.call("POST", "/learn")
            samples["learn"].append(time.perf_counter() - begin)
    elapsed = time.perf_counter() - started
    patterns = conn.call("GET", "/metrics")["patterns_learned"]
    conn.close()
    return {
        "samples": samples,
        "requests_per_s": sum(map(len, samples.values())) / elapsed,
        "patterns": patterns,
        "predictions_per_read": predicted / max(1, len(samples["predictions"])),
    }


def dense_rows(result: dict[str, Any], core: str) -> list[dict[str, Any]]:
    """Table rows for the dense stream on one engine core."""
    label = f"dense, {core} core, {result['patterns']} patterns"
    return [
        {"measure": f"POST /observe ({label})", **percentiles(result["samples"]["observe"])},
        {
            "measure": f"GET /predictions ({label}, {result['predictions_per_read']:.0f} each)",
            **percentiles(result["samples"]["predictions"]),
        },
        {"measure": f"POST /learn ({label})", **percentiles(result["samples"]["learn"])},
    ]


def sparse_suite(args: argparse.Namespace) -> dict[str, Any]:
    """The original measurements: one client's latencies, then throughput with many clients."""
    rng = random.Random(3)
    rows: list[dict[str, Any]] = []
    with start_processor("bench") as running:
        port = int(running.url.rsplit(":", 1)[1])
        conn = Connection(port)
        observe_latency(conn, observe_bodies(300, rng))  # warm up
        conn.call("POST", "/clear-all")
        bodies = observe_bodies(args.requests, rng)
        rows.append(
            {"measure": "POST /observe (empty KB)", **percentiles(observe_latency(conn, bodies))}
        )

        conn.close()
        conn = Connection(port)
        learn_patterns(conn, 200, rng)
        bodies = observe_bodies(args.requests, rng)
        per_observe = predictions_per_observe(conn, bodies)  # also the warm-up
        samples = observe_latency(conn, bodies)
        rows.append(
            {
                "measure": f"POST /observe (200 patterns, {per_observe:.0f} predictions)",
                **percentiles(samples),
            }
        )
        rows.append(
            {
                "measure": "POST /observe (200 patterns, httpx client)",
                **percentiles(observe_latency_httpx(running.url, bodies)),
            }
        )
        conn.close()
        conn = Connection(port)
        samples, size = predictions_latency(conn, args.requests)
        rows.append({"measure": f"GET /predictions ({size} predictions)", **percentiles(samples)})
        rows.append(
            {
                "measure": "WS observe round trip (200 patterns)",
                **percentiles(ws_latency(running.url, bodies)),
            }
        )
        conn.close()
        conn = Connection(port)
        conn.call("POST", "/clear-all")
        conn.close()
        rate, count = asyncio.run(throughput(port, args.clients, args.requests * 3, args.limit_s))
    return {
        "latency": rows,
        "predictions_per_observe_200_patterns": per_observe,
        "throughput": {"clients": args.clients, "requests": count, "per_s": rate},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--limit-s", type=float, default=20.0)
    parser.add_argument("--dense-observations", type=int, default=2000)
    parser.add_argument("--dense-only", action="store_true", help="only the dense workload")
    parser.add_argument(
        "--cores", default="python,compiled", help="KATO_ENGINE_CORE values for the dense stream"
    )
    args = parser.parse_args()
    results = {} if args.dense_only else sparse_suite(args)
    dense: dict[str, dict[str, Any]] = {}
    for core in args.cores.split(","):
        with start_processor("bench-dense", KATO_ENGINE_CORE=core) as running:
            port = int(running.url.rsplit(":", 1)[1])
            dense[core] = dense_stream(port, args.dense_observations, random.Random(14))
    dense_table = [row for core, result in dense.items() for row in dense_rows(result, core)]
    rows = [*results.get("latency", []), *dense_table]
    print(table("processor service over loopback, one client (ms)", rows))
    for core, result in dense.items():
        print(
            f"dense stream, {core} core: {args.dense_observations} observations, "
            f"{result['patterns']} patterns, {result['requests_per_s']:,.0f} req/s "
            "(observe + predictions + learn, one client)"
        )
    if "throughput" in results:
        rate, count = results["throughput"]["per_s"], results["throughput"]["requests"]
        print(f"observe throughput, {args.clients} clients, empty KB: {rate:,.0f} req/s ({count})")
    results["dense"] = {
        "workload": (
            "one event of 2-4 distinct symbols from 50 per observe; GET /predictions every 5th, "
            "POST /learn every 10th; one keep-alive client, memory store"
        ),
        "observations": args.dense_observations,
        "cores": {
            core: {
                "patterns": result["patterns"],
                "requests_per_s": result["requests_per_s"],
                "predictions_per_read": result["predictions_per_read"],
            }
            for core, result in dense.items()
        },
        "latency": dense_table,
    }
    path = write("processor-dense" if args.dense_only else "processor", results)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
