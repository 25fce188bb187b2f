"""Session start latency with and without the warm pool (issue 15), process and Docker backends.

Workload, per mode (``warm``: ``WARM_POOL_SIZE=4``; ``empty``: ``WARM_POOL_SIZE=0``; both with
the fork server, ``PROCESS_SPAWN=fork``; ``warm-exec``, ``empty-exec``: a new interpreter per
processor; ``empty-exec`` is how sessions started before issue 15; ``docker-warm``,
``docker-empty``: ``BACKEND=docker``, containers of ``--image`` published on loopback, the
Docker part, in ``make bench-scale``), on a real manager process (embedded Redis, memory store):

* **create -> ready**: ``--sessions`` creates one after another (``POST /session/create``, which
  answers once the processor is ready), timed at the client. In ``warm`` mode each create waits
  (untimed) until the pool holds a processor again: the arrival rate stays below the refill
  rate, which is what a pool is sized for; a burst larger than the pool is cold-start speed.
* **hibernated -> first answer**: each session learns ``--patterns`` patterns
  (``max_pattern_length=2``, one ``/observe-sequence``), all are hibernated by one reaper pass,
  then each is asked ``GET /stm`` (restore: a start, ``PUT /state``, the answer), timed.
* **memory**: RSS, PSS and USS (``/proc/<pid>/smaps_rollup``) of the idle processors
  (process backend only).

Run: ``python bench/create.py [--sessions 50] [--patterns 200] [--modes warm,empty,...]``;
``--modes docker-warm,docker-empty`` for the Docker part. Modes run one after another, so
compare figures of one run only, with its load average (printed).
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _manager import api_keys, running_manager
from _report import percentiles, table, write

from tests.support.pids import processes_of

WARM_SIZE = 4
_WAIT_S = 120.0


def _wait_for_pool(client: httpx.Client, admin: dict[str, str], at_least: int) -> None:
    deadline = time.monotonic() + _WAIT_S
    while True:
        pool = client.get("/admin/stats", headers=admin).json()["warm_pool"]
        if pool is None or pool["ready"] >= at_least:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the pool did not refill: {pool}")
        time.sleep(0.02)


def _memory(manager_id: str) -> dict[str, float]:
    """Mean RSS, PSS and USS (MiB) of this manager's processors, from ``smaps_rollup``."""
    rows: list[dict[str, float]] = []
    for pid in processes_of(manager_id):
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        kb = {
            line.split(":")[0]: int(line.split()[1])
            for line in text.splitlines()[1:]
            if ":" in line
        }
        uss = kb.get("Private_Clean", 0) + kb.get("Private_Dirty", 0)
        rows.append(
            {"rss": kb.get("Rss", 0) / 1024, "pss": kb.get("Pss", 0) / 1024, "uss": uss / 1024}
        )
    if not rows:
        return {}
    return {
        "processors": len(rows),
        **{
            f"{k}_mib": round(statistics.fmean(r[k] for r in rows), 1)
            for k in ("rss", "pss", "uss")
        },
    }


def _remove_containers(manager_id: str) -> None:
    """Remove whatever this run's manager left (a slow stop cut short by its SIGKILL)."""
    import docker

    client = docker.from_env()
    try:
        for row in client.api.containers(
            all=True, filters={"label": f"io.kato.manager={manager_id}"}
        ):
            client.api.remove_container(row["Id"], force=True)
    finally:
        client.close()


MODES = {
    "warm": (WARM_SIZE, "fork"),
    "empty": (0, "fork"),
    "warm-exec": (WARM_SIZE, "exec"),
    "empty-exec": (0, "exec"),
    "docker-warm": (WARM_SIZE, "docker"),
    "docker-empty": (0, "docker"),
}
PROCESS_MODES = ("warm", "empty", "warm-exec", "empty-exec")


def _backend_env(spawn: str, image: str) -> dict[str, str]:
    if spawn == "docker":
        return {"BACKEND": "docker", "DOCKER_PUBLISH": "loopback", "DOCKER_IMAGE": image}
    return {"PROCESS_SPAWN": spawn}


def run_mode(mode: str, sessions: int, patterns: int, image: str) -> dict[str, Any]:
    admin_token = secrets.token_urlsafe(24)
    key = secrets.token_urlsafe(24)
    manager_id = f"bench-create-{uuid.uuid4().hex[:8]}"
    admin = {"Authorization": f"Bearer {admin_token}"}
    creator = {"Authorization": f"Bearer {key}"}
    size, spawn = MODES[mode]
    with (
        tempfile.TemporaryDirectory(prefix="kato-create-bench-") as workdir,
        running_manager(
            Path(workdir),
            admin_token,
            API_KEYS=api_keys(key),
            MANAGER_ID=manager_id,
            WARM_POOL_SIZE=str(size),
            **_backend_env(spawn, image),
            MAX_SESSIONS=str(sessions + 10),
            MAX_SESSIONS_PER_USER=str(sessions + 10),
            SHUTDOWN_ACTION="delete",
        ) as url,
        httpx.Client(base_url=url, trust_env=False, timeout=120) as client,
    ):
        created: list[dict[str, Any]] = []
        create_s: list[float] = []
        for i in range(sessions):
            _wait_for_pool(client, admin, 1)
            began = time.perf_counter()
            reply = client.post(
                "/session/create",
                json={"user_id": f"u{i}", "idle_timeout_s": 1, "genes": {"max_pattern_length": 2}},
                headers=creator,
            )
            create_s.append(time.perf_counter() - began)
            if reply.status_code != 201:
                raise RuntimeError(f"create: {reply.status_code} {reply.text}")
            created.append(reply.json())
        memory = _memory(manager_id) if spawn != "docker" else {}

        observations = [{"strings": [f"s{j}"]} for j in range(2 * patterns)]
        for session in created:
            reply = client.post(
                f"/session/{session['session_id']}/observe-sequence",
                json={"observations": observations},
                headers={"Authorization": f"Bearer {session['token']}"},
            )
            if reply.status_code != 200:
                raise RuntimeError(f"observe-sequence: {reply.status_code} {reply.text}")
        time.sleep(1.5)  # every session is idle past its 1 s timeout
        reaped = client.post("/admin/reap", headers=admin).json()
        hibernated = len(reaped.get("hibernated", []))
        _wait_for_pool(client, admin, size)

        restore_s: list[float] = []
        for session in created:
            _wait_for_pool(client, admin, 1)
            began = time.perf_counter()
            reply = client.get(
                f"/session/{session['session_id']}/stm",
                headers={"Authorization": f"Bearer {session['token']}"},
            )
            restore_s.append(time.perf_counter() - began)
            if reply.status_code != 200:
                raise RuntimeError(f"restore: {reply.status_code} {reply.text}")
        pool = client.get("/admin/stats", headers=admin).json()["warm_pool"]
        if spawn == "docker":  # ended here: a stop's SHUTDOWN_ACTION would outlast its grace
            for session in created:
                client.delete(
                    f"/session/{session['session_id']}",
                    headers={"Authorization": f"Bearer {session['token']}"},
                )
    if spawn == "docker":
        _remove_containers(manager_id)
    return {
        "mode": mode,
        "load_average": os.getloadavg(),
        "warm_pool_size": size,
        "process_spawn": spawn,
        "sessions": sessions,
        "patterns": patterns,
        "hibernated": hibernated,
        "create": percentiles(create_s),
        "restore": percentiles(restore_s),
        "pool": pool,
        "memory_after_creates": memory,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--patterns", type=int, default=200)
    parser.add_argument(
        "--modes", default=",".join(PROCESS_MODES), help=f"comma-separated, of: {','.join(MODES)}"
    )
    parser.add_argument("--image", default="kato-processor:latest", help="docker modes' image")
    args = parser.parse_args()
    results = [
        run_mode(mode, args.sessions, args.patterns, args.image) for mode in args.modes.split(",")
    ]
    rows = [
        {
            "mode": r["mode"],
            "pool": r["warm_pool_size"],
            "create_p50_ms": r["create"]["p50_ms"],
            "create_p95_ms": r["create"]["p95_ms"],
            "restore_p50_ms": r["restore"]["p50_ms"],
            "restore_p95_ms": r["restore"]["p95_ms"],
            "hits": (r["pool"] or {}).get("hits", 0),
            "rss_mib": r["memory_after_creates"].get("rss_mib"),
            "pss_mib": r["memory_after_creates"].get("pss_mib"),
            "uss_mib": r["memory_after_creates"].get("uss_mib"),
            "load_1m": round(r["load_average"][0], 1),
        }
        for r in results
    ]
    title = (
        f"create -> ready and hibernated -> first answer, {args.modes}, {args.sessions} "
        f"sessions, {args.patterns} patterns each (memory store)"
    )
    print(table(title, rows))
    path = write("create", {"sessions": args.sessions, "patterns": args.patterns, "modes": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
