"""Knowledge-base store latency: memory vs a MongoDB-wire server (SecantusDB unless MONGO_URL).

Each store first holds ``--preload`` patterns; then every operation the engine does per learn
or per predict is timed one call at a time.
Run: ``python bench/storage.py [--preload 1000] [--samples 300]``.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import msgspec
from _report import percentiles, table, write
from pymongo import MongoClient

from processor_image.engine.knowledge import KnowledgeBase
from processor_image.engine.naming import pattern_hash
from processor_image.storage import MemoryKnowledgeBase
from processor_image.storage.mongodb import MongoKnowledgeBase, database_name
from tests.mongo_server import mongo_server

VOCABULARY = [f"sym{i:04d}" for i in range(1000)]


def ten_symbol_pattern(rng: random.Random) -> list[list[str]]:
    """Five events of two symbols."""
    return [sorted(rng.sample(VOCABULARY, 2)) for _ in range(5)]


def timed(samples: int, call: Callable[[int], object]) -> dict[str, float]:
    durations = []
    for n in range(samples):
        started = time.perf_counter()
        call(n)
        durations.append(time.perf_counter() - started)
    return percentiles(durations)


def measure(kb: KnowledgeBase, preload: int, samples: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    known = [ten_symbol_pattern(rng) for _ in range(preload)]
    for pattern in known:
        kb.learn(pattern_hash(pattern), pattern, {"joy": 0.5}, 5)
    fresh = [ten_symbol_pattern(rng) for _ in range(samples)]
    names = [pattern_hash(p) for p in known]
    prediction = msgspec.json.encode(  # a record as the engine stores it: JSON
        [{"name": names[0], "matches": ["a", "b"], "potential": 1.25, "emotives": {}}]
    )
    operations: dict[str, Callable[[int], object]] = {
        "learn new (10 symbols)": lambda n: kb.learn(
            pattern_hash(fresh[n]), fresh[n], {"joy": 0.5}, 5
        ),
        "learn repeat (10 symbols)": lambda n: kb.learn(names[n], known[n], None, 5),
        "get_pattern": lambda n: kb.get_pattern(names[n]),
        "get_patterns (20)": lambda n: kb.get_patterns(names[n : n + 20]),
        "symbol_stats (30)": lambda n: kb.symbol_stats(VOCABULARY[n : n + 30]),
        "totals": lambda n: kb.totals(),
        "symbol_count": lambda n: kb.symbol_count(),
        "pattern_count": lambda n: kb.pattern_count(),
        "store_predictions": lambda n: kb.store_predictions(f"u{n}", prediction),
        "find_predictions": lambda n: kb.find_predictions(f"u{n}"),
    }
    rows = [{"operation": op, **timed(samples, call)} for op, call in operations.items()]
    # Start-up reads every pattern to rebuild the index: time the whole pass a few times.
    rows.append(
        {
            "operation": f"iter_patterns (all {kb.pattern_count()})",
            **timed(5, lambda n: list(kb.iter_patterns())),
        }
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preload", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args()
    samples = min(args.samples, args.preload)
    results: dict[str, list[dict[str, Any]]] = {}
    results["memory"] = measure(MemoryKnowledgeBase(), args.preload, samples, seed=1)
    with mongo_server() as url:
        kb_id = f"bench_{uuid.uuid4().hex[:12]}"
        client: MongoClient[dict[str, Any]] = MongoClient(url)
        kb = MongoKnowledgeBase(url, kb_id, client=client)
        try:
            results["mongodb"] = measure(kb, args.preload, samples, seed=1)
        finally:
            kb.close()
            client.drop_database(database_name(kb_id))
            client.close()
    rows = [
        {
            "operation": memory["operation"],
            "memory p50 ms": memory["p50_ms"],
            "memory p95 ms": memory["p95_ms"],
            "mongodb p50 ms": mongo["p50_ms"],
            "mongodb p95 ms": mongo["p95_ms"],
        }
        for memory, mongo in zip(results["memory"], results["mongodb"], strict=True)
    ]
    print(
        table(f"Knowledge-base stores ({args.preload} patterns preloaded, {samples} calls)", rows)
    )
    path = write(
        "storage",
        {
            "preload": args.preload,
            "samples": samples,
            "mongodb_server": "MONGO_URL" if os.environ.get("MONGO_URL") else "SecantusDB",
            "rows": rows,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
