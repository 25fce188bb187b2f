"""Large snapshots: hibernate and restore a big session through a real manager process.

Two states, each built through the manager's proxy (process backend, embedded Redis):

* ``big-strings``: 50 observations of one 1 MB hex string each (~50 MB of state; hex is a
  pessimistic case for compression, about 2x);
* ``dense``: the issue's ordinary workload: 2,000 observations of 2-4 symbols out of 50, a learn
  every 10 (200 patterns); most of that state is the stored per-observation predictions.

For each: the raw (plain JSON) state size, the snapshot bytes ``/admin/stats`` reports (stored
compressed), how long hibernation takes (``POST /admin/reap`` on the idle session), the
manager's resident memory before it and its peak during it (``VmHWM`` after resetting it
through ``/proc/<pid>/clear_refs``), how long the first request after it takes (the restore),
and whether the restored state equals the original. Run: ``python bench/snapshots.py``.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kato_sessions import Client, Retry, Session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _manager import api_keys, manager_process
from _report import table, write

MB = 1024 * 1024


def memory_kb(pid: int, field: str) -> int:
    """``VmRSS`` / ``VmHWM`` of a process, in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def reset_peak(pid: int) -> bool:
    """Reset the process's peak resident size to its current one (Linux ``clear_refs`` 5)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def build_big_strings(session: Session) -> None:
    for _ in range(5):
        session.observe_sequence([{"strings": [os.urandom(MB // 2).hex()]} for _ in range(10)])


def build_dense(session: Session) -> None:
    rng = random.Random(12)
    symbols = [f"s{n}" for n in range(50)]
    for _ in range(200):
        session.observe_sequence(
            [{"strings": rng.sample(symbols, rng.randint(2, 4))} for _ in range(10)]
        )
        session.learn()


WORKLOADS = {"big-strings": build_big_strings, "dense": build_dense}


def measure(name: str, workdir: Path) -> dict[str, Any]:
    token, key = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    env = {"MANAGER_ID": f"snapshot-bench-{secrets.token_hex(3)}", "API_KEYS": api_keys(key)}
    with (
        manager_process(workdir, token, **env) as (url, manager),
        # no retries: a refused restore must show, not be waited out
        Client(url, api_key=key, admin_token=token, timeout_s=600, retry=Retry(0)) as client,
    ):
        session = client.create("bench", idle_timeout_s=1)
        sid = session.session_id
        started = time.perf_counter()
        WORKLOADS[name](session)
        build_s = time.perf_counter() - started
        print(f"{name}: built in {build_s:.1f} s", file=sys.stderr)
        raw = session.get_state()  # plain JSON
        time.sleep(1.2)  # past the 1 s idle deadline

        rss_before_kb = memory_kb(manager.pid, "VmRSS")
        peak_reset = reset_peak(manager.pid)
        started = time.perf_counter()
        report = client.reap()
        hibernate_s = time.perf_counter() - started
        peak_kb = memory_kb(manager.pid, "VmHWM")
        if report.hibernated != [sid]:
            raise RuntimeError(f"the reaper did not hibernate the session: {report}")
        snapshots = client.stats().snapshots

        started = time.perf_counter()
        session.stm()  # the restore (a failed one raises)
        restore_s = time.perf_counter() - started
        restored = session.get_state()
        return {
            "workload": name,
            "raw_mb": len(raw) / MB,
            "stored_mb": snapshots.bytes / MB,
            "ratio": len(raw) / max(1, snapshots.bytes),
            "build_s": build_s,
            "hibernate_s": hibernate_s,
            "restore_s": restore_s,
            "mgr_rss_mb": rss_before_kb / 1024,
            "mgr_peak_mb": peak_kb / 1024,
            "peak_is_hibernation_only": peak_reset,
            "identical": restored == raw,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--workload", choices=[*WORKLOADS, "all"], default="all")
    args = parser.parse_args()
    names = list(WORKLOADS) if args.workload == "all" else [args.workload]
    rows = []
    for name in names:
        with tempfile.TemporaryDirectory(prefix="kato-snapshot-bench-") as workdir:
            rows.append(measure(name, Path(workdir)))
    print(table("hibernate and restore a large session (process backend, embedded Redis)", rows))
    path = write("snapshots", {"rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
