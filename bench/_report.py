"""Shared output for the benchmarks: a plain-text table on stdout and JSON in bench/results/."""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def percentiles(samples_s: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99 in milliseconds."""
    ordered = sorted(samples_s)
    if not ordered:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan")}

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000

    return {"p50_ms": pick(0.50), "p95_ms": pick(0.95), "p99_ms": pick(0.99)}


def mean_ms(samples_s: Sequence[float]) -> float:
    """Mean in milliseconds."""
    return statistics.fmean(samples_s) * 1000 if samples_s else float("nan")


def table(title: str, rows: list[dict[str, Any]]) -> str:
    """Rows of dicts as an aligned text table."""
    if not rows:
        return f"{title}\n(no rows)\n"
    columns = list(rows[0])
    cells = [[_fmt(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    line = "  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))
    body = "\n".join("  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in cells)
    return f"{title}\n{line}\n{'-' * len(line)}\n{body}\n"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def write(name: str, payload: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>.json`` with machine facts added."""
    RESULTS.mkdir(exist_ok=True)
    payload = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "machine": platform.machine(),
        **payload,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
