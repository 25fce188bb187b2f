"""Proxy overhead: requests direct to a processor, through a bare byte relay, through the manager.

Starts a real manager (``python -m session_manager``: embedded Redis, ``process`` backend, the
journal on and processors reached over their unix sockets, as by default) on loopback, creates
sessions (timing create→ready), and a bare asyncio byte relay (``bench/_relay.py``, the floor any
proxy is measured against) in front of the third session's processor. One keep-alive client then
drives three processors of the same kind, each with one writer as in a deployment — the second
session's directly, the third's through the relay, the first's through ``/session/{id}/`` — in
turn, with the same requests, for two workloads: a simple one (the same two-symbol observe) and a
dense one (2-4 symbols per event from a 50-symbol vocabulary, learn every 10 observes, predictions
every 5: up to 200 patterns that most observations match). Then the simple observe over ``/ws``
(one message, one reply), then 8 concurrent keep-alive HTTP clients for a fixed time (requests/s).
Counts and durations are bounded by the arguments. Targets (issue 14): the manager adds ≤ 0.3 ms
p50 to a dense observe, and ≤ 2.5 times what the relay adds.
Run: ``python bench/proxy.py [--requests 2000] [--dense 1500] [--seconds 4] [--sessions 8]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _manager import api_keys
from _report import percentiles, table, write
from websockets.sync.client import connect as ws_connect

from session_manager.backends.process import MANAGER_MARKER
from session_manager.processor_secrets import ProcessorSecrets
from tests.support.net import free_port

OBSERVE = json.dumps({"strings": ["hello", "world"], "vectors": [], "emotives": {}}).encode()
JSON = {"Content-Type": "application/json"}
SECRET_KEY = secrets.token_hex(16)
"""The manager's ``PROCESSOR_SECRET_KEY``: the direct and relayed requests send the secret."""


class Connection:
    """One keep-alive HTTP/1.1 connection (stdlib, so the client adds little of its own)."""

    def __init__(self, base_url: str) -> None:
        host, port = base_url.removeprefix("http://").split(":")
        self.http = http.client.HTTPConnection(host, int(port), timeout=30)

    def call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        try:
            self.http.request(method, path, body=body, headers=headers or {})
            response = self.http.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # The server closed the idle keep-alive connection (5 s) as this request left.
            self.http.close()
            self.http.request(method, path, body=body, headers=headers or {})
            response = self.http.getresponse()
        return response.status, response.read()

    def json(self, method: str, path: str, payload: Any = None, **headers: str) -> Any:
        body = None if payload is None else json.dumps(payload).encode()
        status, data = self.call(method, path, body, {**JSON, **headers})
        if status >= 300:
            raise RuntimeError(f"{method} {path} -> {status}: {data[:300]!r}")
        return json.loads(data) if data else None

    def close(self) -> None:
        self.http.close()


def start_manager(
    port: int, admin_token: str, api_key: str, workdir: Path
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "LISTEN_HOST": "127.0.0.1",
        "LISTEN_PORT": str(port),
        "DATA_DIR": str(workdir / "data"),
        "ADMIN_TOKEN": admin_token,
        "API_KEYS": api_keys(api_key),
        "MANAGER_ID": workdir.name,
        "PROCESSOR_SECRET_KEY": SECRET_KEY,
        "SESSION_AUTH": "token",
        "IDLE_TIMEOUT_S": "3600",
        "REAP_INTERVAL_S": "3600",
        "LOG_LEVEL": "WARNING",
    }
    log = (workdir / "manager.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "session_manager"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"manager exited: {(workdir / 'manager.log').read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                pass
            conn = Connection(f"http://127.0.0.1:{port}")
            if conn.call("GET", "/health")[0] == 200:
                conn.close()
                return process
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("manager did not answer /health within 60 s")


def stop_manager(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def kill_leftover_processors(manager_id: str) -> int:
    """SIGKILL any processor still marked with this run's manager id (a cleanup that failed)."""
    killed = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"{MANAGER_MARKER}={manager_id}".encode() in environ:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(entry.name), signal.SIGKILL)
                killed += 1
    return killed


def find_endpoint(record: Any) -> str | None:
    """The processor's base URL inside an admin session record (wherever CORE put it)."""
    if isinstance(record, dict):
        for key, value in record.items():
            if key == "endpoint" and isinstance(value, str):
                return value
            found = find_endpoint(value)
            if found:
                return found
    return None


Route = tuple[str, Connection, str, dict[str, str]]
"""A way to the processor: name, keep-alive connection, path prefix, headers."""

VOCABULARY = [f"s{i:02d}" for i in range(50)]
DENSE_RESET_EVERY = 2000
"""Observes after which the knowledge base is cleared: learn every 10 keeps it at <= 200."""


def simple_rounds(routes: list[Route], requests: int) -> dict[str, list[float]]:
    """The same two-symbol observe on every route in alternating rounds; STM cleared per round."""
    samples: dict[str, list[float]] = {name: [] for name, *_ in routes}
    for _, conn, prefix, headers in routes:
        for _ in range(100):  # warm up every path (pools, caches)
            conn.call("POST", f"{prefix}/observe", OBSERVE, headers)
    for _ in range(10):
        for name, conn, prefix, headers in routes:
            conn.call("POST", f"{prefix}/clear-stm", b"", headers)
            for _ in range(max(1, requests // 10)):
                started = time.perf_counter()
                status, _ = conn.call("POST", f"{prefix}/observe", OBSERVE, headers)
                samples[name].append(time.perf_counter() - started)
                if status != 200:
                    raise RuntimeError(f"{name} observe -> {status}")
    return samples


def dense_rounds(routes: list[Route], observes: int) -> dict[tuple[str, str], list[float]]:
    """The dense workload: one stream of steps, each sent on every route in turn.

    2-4 symbols per event from 50, ``POST /learn`` after every 10th observe, ``GET
    /predictions`` after every 5th; the knowledge base is cleared every 2,000 observes (so up
    to 200 patterns of ~10 events). Each route drives a processor of its own (``main``), and
    every processor gets the same stream, step by step, so each route sees the same mix of
    cheap and costly requests on the same knowledge; which route goes first rotates. The
    manager is its session's only writer, as in a deployment (a processor answers only its
    manager): writes sent to its processor some other way would move the numbers its journal
    expects, and cost it a Redis round trip no deployment pays. Samples per (route, kind).
    """
    rng = random.Random(14)
    samples: dict[tuple[str, str], list[float]] = {}

    def timed(name: str, kind: str, conn: Connection, *request: Any) -> None:
        started = time.perf_counter()
        status, data = conn.call(*request)
        samples.setdefault((name, kind), []).append(time.perf_counter() - started)
        if status != 200:
            raise RuntimeError(f"{name} {kind} -> {status}: {data[:200]!r}")

    for step in range(observes):
        turn = routes[step % len(routes) :] + routes[: step % len(routes)]
        symbols = rng.sample(VOCABULARY, rng.randint(2, 4))
        body = json.dumps({"strings": symbols, "vectors": [], "emotives": {}}).encode()
        for name, conn, prefix, headers in turn:
            if step % DENSE_RESET_EVERY == 0:
                conn.call("POST", f"{prefix}/clear-all", b"", headers)
            timed(name, "observe", conn, "POST", f"{prefix}/observe", body, headers)
        for name, conn, prefix, headers in turn:
            if (step + 1) % 5 == 0:
                timed(name, "predictions", conn, "GET", f"{prefix}/predictions", None, headers)
            if (step + 1) % 10 == 0:
                timed(name, "learn", conn, "POST", f"{prefix}/learn", b"", headers)
    for _, conn, prefix, headers in routes:  # what follows starts afresh
        conn.call("POST", f"{prefix}/clear-all", b"", headers)
    return samples


@contextlib.contextmanager
def byte_relay(endpoint: str) -> Iterator[tuple[str, int]]:
    """A bare asyncio byte relay (``bench/_relay.py``, its own process) in front of ``endpoint``."""
    host, port = endpoint.removeprefix("http://").split(":")
    listen = free_port()
    relay = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).resolve().parent / "_relay.py"),
            str(listen),
            host,
            port,
        ]
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", listen), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline or relay.poll() is not None:
                    raise RuntimeError("the byte relay did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{listen}", relay.pid
    finally:
        relay.terminate()
        relay.wait(timeout=10)


def websocket_rounds(
    endpoint: str, base: str, session: dict[str, Any], messages: int
) -> tuple[list[float], list[float]]:
    """Observe round trips over ``/ws`` straight to the processor and through the manager."""
    direct_url = "ws" + endpoint.removeprefix("http") + "/ws"
    proxied_url = (
        "ws" + base.removeprefix("http") + f"/session/{session['session_id']}/ws"
        f"?token={session['token']}"
    )
    message = json.dumps(
        {"type": "observe", "payload": {"strings": ["hello"], "vectors": [], "emotives": {}}}
    )
    clear = json.dumps({"type": "clear_stm"})
    samples: dict[str, list[float]] = {"direct": [], "proxy": []}
    secret = ProcessorSecrets(SECRET_KEY).headers(session["session_id"])
    with (
        ws_connect(direct_url, proxy=None, additional_headers=secret) as direct,
        ws_connect(proxied_url, proxy=None) as via,
    ):
        sockets = (("direct", direct), ("proxy", via))
        for _, ws in sockets:
            for _ in range(100):
                ws.send(message)
                ws.recv()
        for _ in range(10):
            for name, ws in sockets:
                ws.send(clear)
                ws.recv()
                for _ in range(max(1, messages // 10)):
                    started = time.perf_counter()
                    ws.send(message)
                    ws.recv()
                    samples[name].append(time.perf_counter() - started)
    return samples["direct"], samples["proxy"]


async def throughput(
    base_url: str, path: str, headers: dict[str, str], clients: int, seconds: float
) -> float:
    """Requests/s of ``clients`` keep-alive connections sending observes back to back."""
    host, port = base_url.removeprefix("http://").split(":")
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\n{head}Content-Length: {len(OBSERVE)}\r\n\r\n"
    ).encode() + OBSERVE
    done = 0
    stop_at = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while time.perf_counter() < stop_at:
                writer.write(request)
                head_bytes = await reader.readuntil(b"\r\n\r\n")
                status = int(head_bytes.split(b" ", 2)[1])
                length = 0
                for line in head_bytes.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                if status != 200:
                    raise RuntimeError(f"{path} -> {status}")
                done += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--requests", type=int, default=2000, help="simple observes per path, one client"
    )
    parser.add_argument("--dense", type=int, default=1500, help="dense observes per path")
    parser.add_argument("--seconds", type=float, default=4.0, help="per path, 8 clients")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument(
        "--sessions", type=int, default=8, help="sessions created (create→ready), at least 3"
    )
    args = parser.parse_args()
    args.sessions = max(args.sessions, 3)

    workdir = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    port, admin_token, api_key = free_port(), secrets.token_hex(16), secrets.token_hex(16)
    manager = start_manager(port, admin_token, api_key, workdir)
    base = f"http://127.0.0.1:{port}"
    api = Connection(base)
    sessions: list[dict[str, Any]] = []
    try:
        create_s: list[float] = []
        for i in range(args.sessions):
            started = time.perf_counter()
            sessions.append(
                api.json(
                    "POST",
                    "/session/create",
                    {"user_id": f"bench-{i}"},
                    Authorization=f"Bearer {api_key}",
                )
            )
            create_s.append(time.perf_counter() - started)
        session = sessions[0]
        # The manager's session, and two more whose processors are reached directly and
        # through the relay: three processors of the same kind, each with one writer.
        endpoints = []
        for created in sessions[:3]:
            record = api.json(
                "GET",
                f"/admin/sessions/{created['session_id']}",
                Authorization=f"Bearer {admin_token}",
            )
            found = find_endpoint(record)
            if found is None:
                raise RuntimeError(f"no processor endpoint in the admin record: {record}")
            endpoints.append(found)
        endpoint = endpoints[0]

        def secret(index: int) -> dict[str, str]:
            return {**JSON, **ProcessorSecrets(SECRET_KEY).headers(sessions[index]["session_id"])}

        auth = {"Authorization": f"Bearer {session['token']}", **JSON}
        own = secret(0)
        with byte_relay(endpoints[2]) as (relay_url, relay_pid):
            conns = [Connection(endpoints[1]), Connection(relay_url), Connection(base)]
            routes: list[Route] = [
                ("direct", conns[0], "", secret(1)),
                ("relay", conns[1], "", secret(2)),
                ("manager", conns[2], f"/session/{session['session_id']}", auth),
            ]
            cpu_before = {"relay": cpu_s([relay_pid]), "manager": cpu_s(manager_pids(manager.pid))}
            simple = simple_rounds(routes, args.requests)
            dense = dense_rounds(routes, args.dense)
            handled = sum(len(v) for (name, _), v in dense.items() if name == "manager")
            handled += len(simple["manager"])
            cpu_per_request = {
                "relay_cpu_ms": (cpu_s([relay_pid]) - cpu_before["relay"]) / handled * 1000,
                "manager_cpu_ms": (cpu_s(manager_pids(manager.pid)) - cpu_before["manager"])
                / handled
                * 1000,
            }
            for conn in conns:
                conn.close()
        ws_direct_s, ws_proxy_s = websocket_rounds(endpoint, base, session, args.requests)
        direct_rps = asyncio.run(throughput(endpoint, "/observe", own, args.clients, args.seconds))
        proxy_rps = asyncio.run(
            throughput(
                base, f"/session/{session['session_id']}/observe", auth, args.clients, args.seconds
            )
        )
    finally:
        api.close()
        api = Connection(base)  # the first one may have idled past the keep-alive timeout
        for created in sessions:
            try:
                api.json(
                    "DELETE",
                    f"/session/{created['session_id']}",
                    Authorization=f"Bearer {created['token']}",
                )
            except (RuntimeError, OSError) as exc:
                print(f"cleanup: {exc}", file=sys.stderr)
        api.close()
        stop_manager(manager)
        if leftovers := kill_leftover_processors(workdir.name):
            print(f"cleanup: killed {leftovers} processor(s) left running", file=sys.stderr)
    shutil.rmtree(workdir, ignore_errors=True)  # kept when the run failed, for manager.log

    c = percentiles(create_s)
    rows = [
        *latency_rows("observe (simple)", simple),
        *(
            row
            for kind in ("observe", "predictions", "learn")
            for row in latency_rows(
                f"{kind} (dense)", {name: dense[(name, kind)] for name, *_ in routes}
            )
        ),
        *latency_rows("WS observe (simple)", {"direct": ws_direct_s, "manager": ws_proxy_s}),
    ]
    rps = {"direct": round(direct_rps), "manager": round(proxy_rps)}
    dense_observe = {row["path"]: row for row in rows if row["request"] == "observe (dense)"}
    manager_added = dense_observe["manager"]["added_p50_ms"]
    relay_added = dense_observe["relay"]["added_p50_ms"]
    summary = {
        "dense_added_p50_ms": manager_added,
        "relay_added_p50_ms": relay_added,
        "vs_relay": manager_added / relay_added if relay_added > 0 else float("nan"),
        "target_added_p50_ms": 0.3,
        "target_vs_relay": 2.5,
        "create_ready_p50_ms": c["p50_ms"],
        "create_ready_p95_ms": c["p95_ms"],
    }
    print(
        table(
            f"one keep-alive client (simple: {args.requests} observes per path in alternating"
            f" rounds; dense: {args.dense} observes per path in alternating steps)",
            rows,
        )
    )
    print(table(f"observe throughput, {args.clients} keep-alive clients (req/s)", [rps]))
    print(
        table(
            "CPU per proxied request, all rounds (ms; the manager with its Redis)",
            [cpu_per_request],
        )
    )
    print(table("dense observe: added p50 vs direct, and session start", [summary]))
    path = write(
        "proxy",
        {
            "workload": {
                "simple": "POST /observe of two fixed symbols, STM cleared every round",
                "dense": "2-4 symbols per event from 50, learn every 10 observes, predictions"
                " every 5, knowledge cleared every 2,000 observes (<= 200 patterns)",
                "client": "one keep-alive http.client connection per path over loopback,"
                " alternating rounds (dense: alternating steps); the relay is a bare asyncio"
                " byte relay process",
            },
            "requests_per_path": args.requests,
            "dense_observes_per_path": args.dense,
            "clients": args.clients,
            "seconds_per_path": args.seconds,
            "sessions_created": args.sessions,
            "rows": rows,
            "throughput_rps": rps,
            "cpu_per_request": cpu_per_request,
            "summary": summary,
        },
    )
    print(f"results: {path}")


def cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system) the processes have used so far."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def manager_pids(pid: int) -> list[int]:
    """The manager and its embedded ``redis-server`` (the journal's appends cost CPU there)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    redis = [int(c) for c in children if b"redis-server" in Path(f"/proc/{c}/cmdline").read_bytes()]
    return [pid, *redis]


def added(row: dict[str, float], floor: dict[str, float]) -> dict[str, float]:
    """What a path adds to the direct one, at p50 and p95."""
    return {
        "added_p50_ms": row["p50_ms"] - floor["p50_ms"],
        "added_p95_ms": row["p95_ms"] - floor["p95_ms"],
    }


def latency_rows(request: str, samples: dict[str, list[float]]) -> list[dict[str, Any]]:
    """One row per path, with what it adds to ``direct``."""
    direct = percentiles(samples["direct"])
    rows: list[dict[str, Any]] = []
    for name, values in samples.items():
        p = percentiles(values)
        extra = added(p, direct) if name != "direct" else {"added_p50_ms": 0.0, "added_p95_ms": 0.0}
        rows.append({"request": request, "path": name, "n": len(values), **p, **extra})
    return rows


if __name__ == "__main__":
    main()
