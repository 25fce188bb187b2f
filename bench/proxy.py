"""Proxy overhead: ``POST /observe`` direct to a processor vs through the manager, and create→ready.

Starts a real manager (``python -m session_manager``: embedded Redis, ``process`` backend) on
loopback, creates sessions (timing create→ready), then times the same observation sent straight
to the session's processor and through ``/session/{id}/observe``: one keep-alive client in
alternating rounds (p50/p95/p99), the same over ``/ws`` (one message, one reply), then 8
concurrent keep-alive HTTP clients for a fixed time (requests/s). Counts and durations are
bounded by the arguments.
Run: ``python bench/proxy.py [--requests 3000] [--seconds 4] [--sessions 8]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _manager import api_keys
from _report import percentiles, table, write
from websockets.sync.client import connect as ws_connect

from session_manager.backends.process import MANAGER_MARKER
from tests.support.net import free_port

OBSERVE = json.dumps({"strings": ["hello", "world"], "vectors": [], "emotives": {}}).encode()
JSON = {"Content-Type": "application/json"}


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


def latency_rounds(
    direct: Connection, proxied: Connection, session: dict[str, Any], requests: int
) -> tuple[list[float], list[float]]:
    """Alternate rounds of direct and proxied observes; STM cleared between rounds."""
    auth = {"Authorization": f"Bearer {session['token']}", **JSON}
    through = f"/session/{session['session_id']}"
    samples: dict[str, list[float]] = {"direct": [], "proxy": []}
    rounds, per_round = 10, max(1, requests // 10)
    for conn, prefix, headers in ((direct, "", JSON), (proxied, through, auth)):
        for _ in range(100):  # warm up both paths (pools, caches)
            conn.call("POST", f"{prefix}/observe", OBSERVE, headers)
    for _ in range(rounds):
        for name, conn, prefix, headers in (
            ("direct", direct, "", JSON),
            ("proxy", proxied, through, auth),
        ):
            conn.call("POST", f"{prefix}/clear-stm", b"", headers)
            for _ in range(per_round):
                started = time.perf_counter()
                status, _ = conn.call("POST", f"{prefix}/observe", OBSERVE, headers)
                samples[name].append(time.perf_counter() - started)
                if status != 200:
                    raise RuntimeError(f"{name} observe -> {status}")
    return samples["direct"], samples["proxy"]


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
    with ws_connect(direct_url, proxy=None) as direct, ws_connect(proxied_url, proxy=None) as via:
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
    parser.add_argument("--requests", type=int, default=3000, help="observes per path, one client")
    parser.add_argument("--seconds", type=float, default=4.0, help="per path, 8 clients")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--sessions", type=int, default=8, help="sessions created (create→ready)")
    args = parser.parse_args()

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
        record = api.json(
            "GET", f"/admin/sessions/{session['session_id']}", Authorization=f"Bearer {admin_token}"
        )
        endpoint = find_endpoint(record)
        if endpoint is None:
            raise RuntimeError(f"no processor endpoint in the admin record: {record}")

        direct, proxied = Connection(endpoint), Connection(base)
        direct_s, proxy_s = latency_rounds(direct, proxied, session, args.requests)
        direct.close()
        proxied.close()
        ws_direct_s, ws_proxy_s = websocket_rounds(endpoint, base, session, args.requests)
        auth = {"Authorization": f"Bearer {session['token']}", **JSON}
        direct_rps = asyncio.run(throughput(endpoint, "/observe", JSON, args.clients, args.seconds))
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

    d, p, c = percentiles(direct_s), percentiles(proxy_s), percentiles(create_s)
    wd, wp = percentiles(ws_direct_s), percentiles(ws_proxy_s)
    rows = [
        {"path": "HTTP direct", **d, "rps_8_clients": round(direct_rps)},
        {"path": "HTTP via manager", **p, "rps_8_clients": round(proxy_rps)},
        {"path": "WS direct", **wd, "rps_8_clients": "-"},
        {"path": "WS via manager", **wp, "rps_8_clients": "-"},
    ]
    added = {q: p[q] - d[q] for q in ("p50_ms", "p95_ms", "p99_ms")}
    summary = {
        "added_p50_ms": added["p50_ms"],
        "added_p95_ms": added["p95_ms"],
        "added_p99_ms": added["p99_ms"],
        "p50_ratio": p["p50_ms"] / d["p50_ms"],
        "ws_added_p50_ms": wp["p50_ms"] - wd["p50_ms"],
        "target_added_p50_ms": 0.5,
        "create_ready_p50_ms": c["p50_ms"],
        "create_ready_p95_ms": c["p95_ms"],
    }
    print(
        table(f"observe: one client ({len(direct_s)} each), then {args.clients} HTTP clients", rows)
    )
    print(table("overhead and session start (process backend)", [summary]))
    path = write(
        "proxy",
        {
            "requests_per_path": len(direct_s),
            "clients": args.clients,
            "seconds_per_path": args.seconds,
            "sessions_created": args.sessions,
            "rows": rows,
            "summary": summary,
        },
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
