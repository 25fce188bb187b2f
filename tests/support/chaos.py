"""The chaos tests' workload, shared by the process and Docker suites.

Seeded workers drive sessions with a mix of operations over HTTP and WebSocket and keep what
was acknowledged; ``chaos`` meanwhile takes processors away (how is the suite's ``Kill``) and
hibernates sessions; ``control_state`` feeds the acknowledged requests to a processor that
never crashed, whose state each session's final state must equal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tests.processes import start_processor
from tests.support.manager import Manager, auth

WORDS = [f"w{i}" for i in range(12)]

Acked = tuple[str, str, bytes]
"""An acknowledged request as the control gets it: method, path, body (ids filled in)."""


class Worker:
    """One session's client: a seeded mix of operations over HTTP and one WebSocket."""

    def __init__(self, manager: Manager, session: dict[str, Any], rng: random.Random) -> None:
        self.manager = manager
        self.session = session
        self.base = f"/session/{session['session_id']}"
        self.rng = rng
        self.acked: list[Acked] = []
        self.failed = 0
        self.ws: ClientConnection | None = None

    def _observation(self) -> dict[str, Any]:
        strings = self.rng.sample(WORDS, self.rng.randint(1, 3))
        emotives = {"joy": round(self.rng.random(), 3)} if self.rng.random() < 0.3 else {}
        return {"strings": strings, "emotives": emotives}

    def _operation(self) -> tuple[str, dict[str, Any] | None]:
        roll = self.rng.random()
        if roll < 0.65:
            return "/observe", self._observation()
        if roll < 0.75:
            observations = [self._observation() for _ in range(self.rng.randint(2, 4))]
            return "/observe-sequence", {"observations": observations}
        if roll < 0.88:
            return "/learn", None
        if roll < 0.93:
            return "/clear-stm", None
        threshold = self.rng.choice([0.1, 0.2, 0.3])
        return "/genes/update", {"genes": {"recall_threshold": threshold}}

    async def run(self, until: float) -> None:
        while time.monotonic() < until:
            path, body = self._operation()
            use_ws = path != "/observe-sequence" and self.rng.random() < 0.5
            try:
                if use_ws:
                    await self._over_websocket(path, body)
                else:
                    await self._over_http(path, body)
            except (httpx.HTTPError, ConnectionClosed, InvalidHandshake, OSError, TimeoutError):
                self.failed += 1
                await self.drop_socket()

    async def _over_http(self, path: str, body: dict[str, Any] | None) -> None:
        reply = await self.manager.client.post(
            self.base + path, json=body, headers=auth(self.session)
        )
        if reply.status_code != 200:
            self.failed += 1
            return
        sent = dict(body or {})
        if path == "/observe":
            sent["unique_id"] = reply.json()["unique_id"]
        elif path == "/observe-sequence":
            ids = [result["unique_id"] for result in reply.json()["results"]]
            sent["observations"] = [
                {**o, "unique_id": i} for o, i in zip(sent["observations"], ids, strict=True)
            ]
        self.acked.append(("POST", path, json.dumps(sent).encode() if body is not None else b""))

    async def _over_websocket(self, path: str, body: dict[str, Any] | None) -> None:
        frame: dict[str, Any]
        if path == "/observe":
            frame = {"type": "observe", "payload": {**(body or {}), "vectors": []}}
        elif path == "/genes/update":
            frame = {"type": "update_genes", "payload": body}
        else:
            frame = {"type": {"/learn": "learn", "/clear-stm": "clear_stm"}[path]}
        ws = await self._socket()
        await ws.send(json.dumps(frame))
        reply = json.loads(await asyncio.wait_for(ws.recv(), timeout=30))
        if reply["type"] == "error":
            self.failed += 1
            return
        assert "seq" not in reply["data"]
        if frame["type"] == "observe":
            frame["payload"]["unique_id"] = reply["data"]["unique_id"]
        self.acked.append(("POST", "/message", json.dumps(frame).encode()))

    async def _socket(self) -> ClientConnection:
        if self.ws is None:
            url = f"{self.manager.ws_url}{self.base}/ws"
            self.ws = await connect(url, additional_headers=auth(self.session), proxy=None)
        return self.ws

    async def drop_socket(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()
            self.ws = None


Kill = Callable[[str], Awaitable[bool]]
"""Takes a ready session's processor away, given its backend ref; False if it was gone."""


async def kill_process_group(ref: str) -> bool:
    """The process backend's kill: SIGKILL to the processor's process group."""
    try:
        os.killpg(int(ref), signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


async def chaos(
    manager: Manager, workers: list[Worker], rng: random.Random, until: float, kill: Kill
) -> dict[str, int]:
    """Kill processors (with ``kill``) and hibernate sessions at seeded random moments."""
    store = manager.app.state.store
    sessions = manager.app.state.sessions
    done = {"kills": 0, "hibernations": 0}
    while time.monotonic() < until:
        await asyncio.sleep(rng.uniform(0.2, 0.8))
        worker = rng.choice(workers)
        sid = worker.session["session_id"]
        record = await store.get(sid)
        if record is None or record.status != "ready" or not record.ref:
            continue
        if rng.random() < 0.75:
            if await kill(record.ref):
                done["kills"] += 1
        else:
            with contextlib.suppress(Exception):
                if await sessions.hibernate(sid):
                    done["hibernations"] += 1
    return done


async def run_chaos(
    manager: Manager, seed: int, run_s: float, kill: Kill, sessions: int = 3
) -> tuple[dict[str, int], list[Worker]]:
    """``sessions`` new sessions under the workload and the chaos for ``run_s`` seconds."""
    rng = random.Random(seed)
    workers = [
        Worker(manager, await manager.create(), random.Random(rng.random()))
        for _ in range(sessions)
    ]
    until = time.monotonic() + run_s
    try:
        done, _ = await asyncio.gather(
            chaos(manager, workers, random.Random(rng.random()), until, kill),
            asyncio.gather(*(worker.run(until) for worker in workers)),
        )
    finally:
        for worker in workers:
            await worker.drop_socket()
    return done, workers


async def final_state(manager: Manager, worker: Worker) -> dict[str, Any]:
    """The session's ``GET /state`` through the manager, once the chaos is over.

    A ``503`` (the session still being restarted when the bounded wait ran out, on a loaded
    machine) is retried after its ``Retry-After``, as the documented client does, for a minute.
    """
    sid = worker.session["session_id"]
    deadline = time.monotonic() + 60
    while True:
        reply = await manager.client.get(f"/session/{sid}/state", headers=auth(worker.session))
        if reply.status_code != 503 or time.monotonic() > deadline:
            break
        await asyncio.sleep(float(reply.headers.get("retry-after", "1")))
    assert reply.status_code == 200, reply.text
    state: dict[str, Any] = reply.json()
    return state


def control_state(
    session_id: str, acked: list[Acked], mongo_url: str | None = None
) -> dict[str, Any]:
    """The state of a processor that never crashed, fed exactly the acknowledged requests.

    With ``mongo_url`` it learns into MongoDB, in the database of ``control-<session id>``.
    """
    env = {"PROCESSOR_NAME": f"session-{session_id}", "KB_ID": session_id, "STORAGE": "memory"}
    if mongo_url is not None:
        env |= {"STORAGE": "mongodb", "MONGO_URL": mongo_url, "KB_ID": f"control-{session_id}"}
    control_processor = start_processor(session_id, port=None, **env)  # port: a free one
    with control_processor as control, httpx.Client(base_url=control.url) as c:
        for method, path, body in acked:
            reply = c.request(
                method, path, content=body, headers={"content-type": "application/json"}
            )
            assert reply.status_code == 200, (path, reply.text)
        state: dict[str, Any] = c.get("/state").json()
        return state
