"""Engine speed: observe+predict latency by knowledge-base size, indexed vs exhaustive; learn rate.

Patterns have 3-8 events of 1-4 symbols drawn from a 1,000-symbol vocabulary (issue 3).
Run: ``python bench/engine.py [--sizes 100,1000,10000] [--samples 200]``.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import percentiles, table, write

from processor_image.engine import Processor
from processor_image.engine.naming import pattern_hash
from processor_image.engine.predictions import predict
from processor_image.storage.memory import MemoryKnowledgeBase
from processor_image.storage.mongodb import MongoKnowledgeBase
from tests.mongo_server import mongo_server

VOCABULARY = [f"sym{i:04d}" for i in range(1000)]


def random_pattern(rng: random.Random) -> list[list[str]]:
    """3-8 events of 1-4 symbols."""
    return [rng.sample(VOCABULARY, rng.randint(1, 4)) for _ in range(rng.randint(3, 8))]


def loaded_processor(
    size: int, rng: random.Random
) -> tuple[Processor, list[list[list[str]]], float]:
    """A processor over ``size`` learned patterns, and the store's learn rate (patterns/s)."""
    kb = MemoryKnowledgeBase()
    patterns = [[sorted(event) for event in random_pattern(rng)] for _ in range(size)]
    started = time.perf_counter()
    for pattern in patterns:
        kb.learn(pattern_hash(pattern), pattern, None, 5)
    learn_rate = size / (time.perf_counter() - started)
    return Processor(processor_id="bench", kb=kb), patterns, learn_rate


def measure(size: int, samples: int, exhaustive_samples: int, seed: int) -> dict[str, object]:
    rng = random.Random(seed)
    processor, patterns, learn_rate = loaded_processor(size, rng)
    observe_s: list[float] = []
    indexed_s: list[float] = []
    exhaustive_s: list[float] = []
    candidates = 0
    index, kb = processor._index, processor.kb  # the same structures observe uses
    for n in range(samples):
        pattern = rng.choice(patterns)
        processor.clear_stm()
        processor.observe(pattern[0], unique_id=f"a{n}")
        noise = [rng.choice(VOCABULARY)]
        started = time.perf_counter()
        processor.observe(pattern[1] + noise, unique_id=f"b{n}")
        observe_s.append(time.perf_counter() - started)
        state = [s for event in processor.stm for s in event]
        genes = {"recall_threshold": 0.1, "max_predictions": 100}
        started = time.perf_counter()
        predict(state, index, kb, **genes)  # type: ignore[arg-type]
        indexed_s.append(time.perf_counter() - started)
        candidates += len(index.candidates(state, 0.1))
        if n < exhaustive_samples:
            started = time.perf_counter()
            predict(state, index, kb, exhaustive=True, **genes)  # type: ignore[arg-type]
            exhaustive_s.append(time.perf_counter() - started)
    observe, indexed, exhaustive = (
        percentiles(observe_s),
        percentiles(indexed_s),
        percentiles(exhaustive_s),
    )
    return {
        "patterns": size,
        "observe_p50_ms": observe["p50_ms"],
        "observe_p95_ms": observe["p95_ms"],
        "indexed_p50_ms": indexed["p50_ms"],
        "indexed_p95_ms": indexed["p95_ms"],
        "exhaustive_p50_ms": exhaustive["p50_ms"],
        "exhaustive_p95_ms": exhaustive["p95_ms"],
        "avg_candidates": round(candidates / samples, 1),
        "learn_per_s": round(learn_rate),
    }


def learn_rates(count: int, seed: int) -> list[dict[str, object]]:
    """Learns per second through each store (new patterns, then the same ones again)."""
    rng = random.Random(seed)
    patterns = [[sorted(event) for event in random_pattern(rng)] for _ in range(count)]
    rows: list[dict[str, object]] = []
    with mongo_server() as url:
        stores = {
            "memory": MemoryKnowledgeBase(),
            "mongodb": MongoKnowledgeBase(url, f"bench-{rng.getrandbits(32):08x}"),
        }
        for name, kb in stores.items():
            try:
                row: dict[str, object] = {"store": name, "patterns": count}
                for phase in ("new", "repeat"):
                    started = time.perf_counter()
                    for pattern in patterns:
                        kb.learn(pattern_hash(pattern), pattern, None, 5)
                    row[f"learn_{phase}_per_s"] = round(count / (time.perf_counter() - started))
                rows.append(row)
            finally:
                kb.clear()
                kb.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--exhaustive-samples", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--learn-patterns", type=int, default=1000)
    args = parser.parse_args()
    rows = [
        measure(int(size), args.samples, args.exhaustive_samples, args.seed)
        for size in args.sizes.split(",")
    ]
    print(table("engine: observe+predict latency (memory store, recall_threshold 0.1)", rows))
    learned = learn_rates(args.learn_patterns, args.seed)
    print(table("learn throughput per store (MONGO_URL, else a local SecantusDB)", learned))
    print(f"results: {write('engine', {'rows': rows, 'learn': learned})}")


if __name__ == "__main__":
    main()
