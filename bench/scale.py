"""Scale: many sessions at once through a real manager, then gone without a trace.

Creates ``--sessions`` sessions (bounded concurrency), counts the containers running at once,
drives observe traffic on all of them concurrently (``--clients`` in flight, bounded by count
and time), measures memory per processor (``docker stats``), deletes them (bounded concurrency)
and counts what was left behind. Run: ``python bench/scale.py --backend docker --sessions 120``.

``--backend swarm`` (root) brings up a three-node swarm on this machine
(``tests.support.swarm_cluster``: engines in their own namespaces), runs the manager image on
node 1 spreading processors over the nodes by label, reports the per-node spread
(``/admin/stats``) and create latency, and tears the swarm down again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import docker
import docker.errors
import httpx
from _manager import api_keys, running_manager
from _report import percentiles, table, write

from tests.docker.manager_container import engine_socket, run_manager_container
from tests.support.swarm_cluster import Cluster, deployment


async def create_all(
    client: httpx.AsyncClient, count: int, concurrency: int, creator: dict[str, str]
) -> tuple[list[dict[str, Any]], list[float]]:
    gate = asyncio.Semaphore(concurrency)
    sessions: list[dict[str, Any]] = []
    latencies: list[float] = []

    async def create(n: int) -> None:
        async with gate:
            started = time.perf_counter()
            response = await client.post(
                "/session/create", json={"user_id": f"user-{n % 10}"}, headers=creator
            )
            latencies.append(time.perf_counter() - started)
            response.raise_for_status()
            sessions.append(response.json())

    await asyncio.gather(*(create(n) for n in range(count)))
    return sessions, latencies


async def drive(
    client: httpx.AsyncClient,
    sessions: list[dict[str, Any]],
    per_session: int,
    limit_s: float,
    clients: int,
) -> tuple[list[float], float]:
    """Observe traffic on every session at once, ``clients`` requests in flight at most."""
    deadline = time.perf_counter() + limit_s
    gate = asyncio.Semaphore(clients)
    latencies: list[float] = []

    async def traffic(session: dict[str, Any]) -> None:
        headers = {"Authorization": f"Bearer {session['token']}"}
        path = f"/session/{session['session_id']}/observe"
        for n in range(per_session):
            if time.perf_counter() > deadline:
                return
            async with gate:
                sent = time.perf_counter()
                response = await client.post(path, json={"strings": [f"s{n % 5}"]}, headers=headers)
                latencies.append(time.perf_counter() - sent)
            response.raise_for_status()

    started = time.perf_counter()
    await asyncio.gather(*(traffic(session) for session in sessions))
    return latencies, time.perf_counter() - started


async def delete_all(
    client: httpx.AsyncClient, sessions: list[dict[str, Any]], concurrency: int
) -> tuple[list[float], float]:
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def delete(session: dict[str, Any]) -> None:
        async with gate:
            sent = time.perf_counter()
            response = await client.delete(
                f"/session/{session['session_id']}",
                headers={"Authorization": f"Bearer {session['token']}"},
            )
            latencies.append(time.perf_counter() - sent)
            response.raise_for_status()

    started = time.perf_counter()
    await asyncio.gather(*(delete(session) for session in sessions))
    return latencies, time.perf_counter() - started


def running_containers(manager_id: str) -> int:
    out = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label=io.kato.manager={manager_id}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return len(out.split())


def container_memory_mib(manager_id: str) -> list[float]:
    """Memory of each processor container (``docker stats``, one shot for all)."""
    ids = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label=io.kato.manager={manager_id}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if not ids:
        return []
    out = subprocess.run(
        ["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", *ids],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    units = {"KiB": 1 / 1024, "MiB": 1.0, "GiB": 1024.0, "B": 1 / 1024 / 1024}
    values = []
    for line in out.splitlines():
        used = line.split("/")[0].strip()
        for unit, factor in units.items():
            if used.endswith(unit):
                values.append(float(used.removesuffix(unit)) * factor)
                break
    return values


def leaked(backend: str, manager_id: str) -> int:
    """Containers of this run still there after the deletes; removed so no run leaves any."""
    if backend != "docker":
        return 0
    ids = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=io.kato.manager={manager_id}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=False)
    return len(ids)


@contextlib.contextmanager
def manager_in_container(image: str, admin: str, **env: str) -> Iterator[str]:
    """The manager image on a private bridge network (processors publish no port, as in
    compose), reached on a 127.0.0.1-published port; yields its URL, removes it all after."""
    network = f"kato-scale-{env['MANAGER_ID']}"
    client = docker.from_env()
    client.networks.create(network, driver="bridge")
    container = None
    try:
        container, url = run_manager_container(
            client,
            image,
            name=f"kato-scale-manager-{env['MANAGER_ID']}",
            network=network,
            socket=engine_socket() or "/var/run/docker.sock",
            environment={
                "LOG_LEVEL": "WARNING",
                "IDLE_TIMEOUT_S": "3600",
                "REAP_INTERVAL_S": "3600",
                **env,
                "ADMIN_TOKEN": admin,
            },
        )
        yield url
    finally:
        if container is not None:
            container.remove(force=True)
        leaked("docker", env["MANAGER_ID"])  # processors on the network would keep it alive
        with contextlib.suppress(docker.errors.APIError):
            client.networks.get(network).remove()
        client.close()


@contextlib.contextmanager
def manager_on_swarm(args: argparse.Namespace, admin: str, **env: str) -> Iterator[str]:
    """A three-node swarm on this machine and the manager image on its node 1; the URL."""
    cluster = Cluster.up(secrets.token_hex(3), args.processor_image, args.session_image)
    try:
        settings = {
            "LOG_LEVEL": "WARNING",
            "IDLE_TIMEOUT_S": "3600",
            "REAP_INTERVAL_S": "3600",
            "SWARM_CONSTRAINTS": "node.labels.kato==processors",
            "SWARM_SPREAD": "node.labels.zone",
            **env,
            "ADMIN_TOKEN": admin,
        }
        with deployment(cluster, env["MANAGER_ID"], args.session_image, settings) as url:
            yield url
    finally:
        cluster.down()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    admin = secrets.token_urlsafe(24)
    key = secrets.token_urlsafe(24)
    manager_id = f"scale-{secrets.token_hex(4)}"
    env = {
        "BACKEND": args.backend,
        "MANAGER_ID": manager_id,
        "MAX_SESSIONS": str(args.sessions + 10),
        "MAX_SESSIONS_PER_USER": str(args.sessions),
        "MAX_CONCURRENT_STARTS": str(args.concurrency),
        "START_TIMEOUT_S": "120",
        "DOCKER_IMAGE": args.processor_image,
        "API_KEYS": api_keys(key),
    }
    try:
        return await measure(args, admin, manager_id, env, {"Authorization": f"Bearer {key}"})
    finally:
        left = leaked(args.backend, manager_id)  # also after a failed run
        if left:
            print(f"LEAKED: {left} containers of {manager_id} (now removed)", file=sys.stderr)


async def measure(
    args: argparse.Namespace,
    admin: str,
    manager_id: str,
    env: dict[str, str],
    creator: dict[str, str],
) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        if args.backend == "swarm":
            url = stack.enter_context(manager_on_swarm(args, admin, **env))
        elif args.network == "private":
            url = stack.enter_context(manager_in_container(args.session_image, admin, **env))
        else:
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="kato-scale-"))
            url = stack.enter_context(running_manager(Path(workdir), admin, **env))
        # Idle connections are dropped before the server's 5 s keep-alive timeout would close
        # them under a request.
        limits = httpx.Limits(
            max_connections=64, max_keepalive_connections=64, keepalive_expiry=2.0
        )
        async with httpx.AsyncClient(base_url=url, timeout=180, limits=limits) as client:
            started = time.perf_counter()
            sessions, latencies = await create_all(client, args.sessions, args.concurrency, creator)
            all_ready_s = time.perf_counter() - started
            stats = (
                await client.get("/admin/stats", headers={"Authorization": f"Bearer {admin}"})
            ).json()
            running = running_containers(manager_id) if args.backend == "docker" else 0
            observed, elapsed = await drive(
                client, sessions, args.observes, args.limit_s, args.clients
            )
            memory = container_memory_mib(manager_id) if args.backend == "docker" else []
            deletes, delete_all_s = await delete_all(client, sessions, args.concurrency * 2)
        left = leaked(args.backend, manager_id)
    create = percentiles(latencies)
    observe = percentiles(observed)
    delete = percentiles(deletes)
    return {
        "backend": args.backend,
        "network": "overlay" if args.backend == "swarm" else args.network,
        "sessions": len(sessions),
        "ready_at_once": stats["sessions_by_status"].get("ready", 0),
        "per_node": " ".join(f"{n}={c}" for n, c in stats.get("processors_by_node", {}).items()),
        "containers_running": running,
        "create_p50_s": create["p50_ms"] / 1000,
        "create_p95_s": create["p95_ms"] / 1000,
        "all_ready_s": all_ready_s,
        "observes": len(observed),
        "observes_per_s": len(observed) / elapsed if elapsed else 0.0,
        "observe_p50_ms": observe["p50_ms"],
        "observe_p95_ms": observe["p95_ms"],
        "mem_per_container_mib": statistics.fmean(memory) if memory else float("nan"),
        "delete_p50_s": delete["p50_ms"] / 1000,
        "delete_all_s": delete_all_s,
        "leaked_containers": left,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", default="docker", choices=["docker", "process", "swarm"])
    parser.add_argument("--sessions", type=int, default=120)
    parser.add_argument(
        "--concurrency", type=int, default=4, help="creates in flight (2 cores: more only queue)"
    )
    parser.add_argument("--observes", type=int, default=50, help="observes per session")
    parser.add_argument("--clients", type=int, default=32, help="observes in flight at most")
    parser.add_argument("--limit-s", type=float, default=60.0)
    parser.add_argument(
        "--network",
        default="loopback",
        choices=["loopback", "private"],
        help="loopback: manager on the host, processors on 127.0.0.1 ports; private: manager "
        "in its container on a private network with the processors (as in compose)",
    )
    parser.add_argument("--processor-image", default="kato-processor:latest")
    parser.add_argument("--session-image", default="kato-session:latest")
    args = parser.parse_args()
    if args.network == "private" and args.backend != "docker":
        parser.error("--network private needs --backend docker")
    row = asyncio.run(run(args))
    title = f"scale: {args.sessions} sessions on the {args.backend} backend ({args.network})"
    print(table(title, [row]))
    name = f"scale-{args.backend}" + ("-private" if args.network == "private" else "")
    print(f"results: {write(name, row)}")


if __name__ == "__main__":
    main()
