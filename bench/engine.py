"""Engine speed, pure-Python core vs compiled core side by side (memory store, in-process).

Workloads (every figure is one ``observe`` call, which computes and stores the predictions):

* dense: events of 2-4 symbols from a 50-symbol vocabulary; 200 patterns of 10 such events
  (what learning every 10 observations gives); then observations of the same kind, short-term
  memory cleared every 10 (so it holds 1-10 events and the knowledge stays at 200 patterns),
  predictions read every 5 (inside the timing; as ``GET /predictions`` reads them: the JSON).
  recall_threshold 0.1, max_predictions 100.
* sparse: patterns of 3-8 events of 1-4 symbols from a 1,000-symbol vocabulary; each sample
  clears STM, observes a pattern's first event, then times the observe of its second event
  plus one unknown symbol.
* learn: patterns/s of the engine's learn (memory knowledge base + the core's index).

Run: ``python bench/engine.py [--sparse-sizes 1000,10000,100000] [--samples 300]``.
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
from processor_image.engine.core import compiled_module, hasher, make_index
from processor_image.storage.memory import MemoryKnowledgeBase

CORES = ("python", "compiled")
DENSE_VOCABULARY = [f"s{i:02d}" for i in range(50)]
SPARSE_VOCABULARY = [f"sym{i:04d}" for i in range(1000)]


def dense_event(rng: random.Random) -> list[str]:
    return sorted(rng.sample(DENSE_VOCABULARY, rng.randint(2, 4)))


def sparse_pattern(rng: random.Random) -> list[list[str]]:
    return [
        sorted(rng.sample(SPARSE_VOCABULARY, rng.randint(1, 4))) for _ in range(rng.randint(3, 8))
    ]


def processor_with(patterns: list[list[list[str]]], core: str) -> Processor:
    kb = MemoryKnowledgeBase(core=core)
    name = hasher(core)  # type: ignore[arg-type]
    for pattern in patterns:
        kb.learn(name(pattern), pattern, None, 5)
    return Processor(processor_id="bench", kb=kb, core=core)


def dense(core: str, patterns: int, samples: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    learned = [[dense_event(rng) for _ in range(10)] for _ in range(patterns)]
    processor = processor_with(learned, core)
    timings: list[float] = []
    for n in range(1, samples + 1):
        event = dense_event(rng)
        started = time.perf_counter()
        processor.observe(event, unique_id=f"u{n}")
        if n % 5 == 0:
            processor.predictions_json()  # what GET /predictions asks of the engine
        timings.append(time.perf_counter() - started)
        if n % 10 == 0:
            processor.clear_stm()
    return timings


def sparse(core: str, size: int, samples: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    patterns = [sparse_pattern(rng) for _ in range(size)]
    processor = processor_with(patterns, core)
    timings: list[float] = []
    for n in range(samples):
        pattern = rng.choice(patterns)
        processor.clear_stm()
        processor.observe(pattern[0], unique_id=f"a{n}")
        event = pattern[1] + [rng.choice(SPARSE_VOCABULARY)]
        started = time.perf_counter()
        processor.observe(event, unique_id=f"b{n}")
        timings.append(time.perf_counter() - started)
    return timings


def learn_rate(core: str, count: int, seed: int) -> float:
    """Patterns/s of what ``Processor.learn`` does after taking STM: hash, store, index."""
    rng = random.Random(seed)
    patterns = [sparse_pattern(rng) for _ in range(count)]
    kb, index = MemoryKnowledgeBase(core=core), make_index(core)  # type: ignore[arg-type]
    pattern_hash = hasher(core)  # type: ignore[arg-type]
    started = time.perf_counter()
    for pattern in patterns:
        name = pattern_hash(pattern)
        if kb.learn(name, pattern, None, 5):
            index.add(name, pattern)
    return count / (time.perf_counter() - started)


def side_by_side(workload: str, patterns: int, runs: dict[str, list[float]]) -> dict[str, object]:
    row: dict[str, object] = {"workload": workload, "patterns": patterns}
    for core in CORES:
        figures = percentiles(runs[core])
        row[f"{core}_p50_ms"] = figures["p50_ms"]
        row[f"{core}_p95_ms"] = figures["p95_ms"]
        row[f"{core}_samples"] = len(runs[core])
    compiled_p50 = row["compiled_p50_ms"]
    assert isinstance(compiled_p50, float)
    row["p50_ratio"] = round(float(row["python_p50_ms"]) / compiled_p50, 1)  # type: ignore[arg-type]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dense-patterns", type=int, default=200)
    parser.add_argument("--sparse-sizes", default="1000,10000,100000")
    parser.add_argument("--samples", type=int, default=500, help="compiled core, per workload")
    parser.add_argument(
        "--python-samples", type=int, default=150, help="pure-Python core (slow), per workload"
    )
    parser.add_argument("--learn-patterns", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if compiled_module() is None:
        sys.exit("the compiled core is not built: pip install -e . with a C compiler")
    samples = {"python": args.python_samples, "compiled": args.samples}
    rows = [
        side_by_side(
            "dense",
            args.dense_patterns,
            {core: dense(core, args.dense_patterns, samples[core], args.seed) for core in CORES},
        )
    ]
    for size in (int(s) for s in args.sparse_sizes.split(",")):
        runs = {core: sparse(core, size, samples[core], args.seed) for core in CORES}
        rows.append(side_by_side("sparse", size, runs))
    print(table("engine: observe+predict latency, pure-Python vs compiled (memory store)", rows))
    learned = [
        {"core": core, "patterns": args.learn_patterns, "learn_per_s": round(rate)}
        for core in CORES
        for rate in [learn_rate(core, args.learn_patterns, args.seed)]
    ]
    print(table("engine: learn throughput (hash + memory store + index)", learned))
    print(f"results: {write('engine', {'rows': rows, 'learn': learned})}")


if __name__ == "__main__":
    main()
