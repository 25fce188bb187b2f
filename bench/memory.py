"""Processor memory as a session lives on: RSS and snapshot size after N observations.

Starts ``python -m processor_image`` (memory store) as a real process and drives it over one
keep-alive loopback connection with the dense workload: each observation is one event of 2-4
distinct symbols from a 50-symbol vocabulary (unique ids), followed by ``POST /learn`` (so
every observation stores its predictions, up to ``max_predictions`` = 100 of them, and knowledge
grows too: one 1-event pattern per observation, most of them new). At checkpoints it reads the
processor's RSS (``/proc/<pid>/status``); at the end, the ``GET /state`` size (uncompressed JSON),
the pattern count and the RSS after that snapshot (taking one leaves the process larger: its
transient objects' memory is kept by the allocator). Runs once per ``PREDICTIONS_HISTORY``
value given (default: 1000, the default, and 0, the reference's unbounded history).

Target (issue 14): RSS after 10,000 observations within 2x of the RSS after the first 100.
Run: ``python bench/memory.py [--observations 10000] [--history 1000,0]``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import table, write

from tests.processes import start_processor

VOCABULARY = [f"s{i}" for i in range(50)]


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


class Client:
    """One keep-alive HTTP/1.1 connection; a non-200 reply stops the benchmark."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._http = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def call(self, method: str, path: str, body: Any = None) -> bytes:
        content = None if body is None else json.dumps(body).encode()
        for attempt in (1, 2):  # the server closes a connection idle for 5 s
            try:
                self._http.request(method, path, content, {"content-type": "application/json"})
                response = self._http.getresponse()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                if attempt == 2:
                    raise
                self._http.close()
                self._http = http.client.HTTPConnection("127.0.0.1", self._port, timeout=120)
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{method} {path}: {response.status} {data[:200]!r}")
        return data


def run(history: int, observations: int, checkpoints: list[int]) -> list[dict[str, Any]]:
    rng = random.Random(14)
    rows: list[dict[str, Any]] = []
    with start_processor("bench-memory", PREDICTIONS_HISTORY=str(history)) as running:
        pid = running.process.pid
        client = Client(int(running.url.rsplit(":", 1)[1]))
        rows.append({"history": history, "observations": 0, "rss_mb": rss_mb(pid)})
        started = time.perf_counter()
        for n in range(1, observations + 1):
            event = rng.sample(VOCABULARY, rng.randint(2, 4))
            client.call("POST", "/observe", {"strings": event, "unique_id": f"o{n}"})
            client.call("POST", "/learn")
            if n in checkpoints:
                rows.append(
                    {
                        "history": history,
                        "observations": n,
                        "rss_mb": rss_mb(pid),
                        "elapsed_s": time.perf_counter() - started,
                    }
                )
                print(rows[-1], flush=True)
        # Last, as taking a snapshot leaves the process larger (its transient objects).
        state = json.loads(client.call("GET", "/state"))
        rows[-1].update(
            state_mb=len(json.dumps(state)) / 2**20,
            patterns=len(state["knowledge"]["patterns"]),
            stored_records=len(state["knowledge"]["predictions"]),
            rss_after_snapshot_mb=rss_mb(pid),
        )
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--observations", type=int, default=10_000)
    parser.add_argument("--history", default="1000,0", help="PREDICTIONS_HISTORY values")
    parser.add_argument("--results", default="memory", help="bench/results/<name>.json")
    args = parser.parse_args()
    checkpoints = sorted(
        {c for c in (100, 1000, 2000, 5000, args.observations) if c <= args.observations}
    )
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    for history in (int(h) for h in args.history.split(",")):
        result = run(history, args.observations, checkpoints)
        rows += result
        first = next(r for r in result if r["observations"] == checkpoints[0])
        last = result[-1]
        summary[str(history)] = {
            "rss_first_mb": first["rss_mb"],
            "rss_last_mb": last["rss_mb"],
            "ratio": last["rss_mb"] / first["rss_mb"],
        }
    print(table("processor memory, dense observe + learn after each (MiB)", rows))
    for history, figures in summary.items():
        label = "unbounded" if history == "0" else f"PREDICTIONS_HISTORY={history}"
        print(
            f"{label}: RSS {figures['rss_first_mb']:.1f} MiB after {checkpoints[0]} -> "
            f"{figures['rss_last_mb']:.1f} MiB after {args.observations} "
            f"({figures['ratio']:.2f}x; target <= 2x)"
        )
    path = write(
        args.results,
        {
            "workload": (
                "one event of 2-4 distinct symbols from 50 per observe, POST /learn after each, "
                "memory store, one keep-alive loopback client"
            ),
            "rows": rows,
            "summary": summary,
        },
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
