"""Chaos: sessions under a mixed HTTP + WebSocket workload, processors killed with SIGKILL and
sessions hibernated at random (seeded) moments. Every acknowledged request is then fed, in
order, to a plain control processor: each session's final state must equal its control's
(nothing acknowledged lost, nothing applied twice).

On ``PROCESSOR_STORAGE=mongodb`` the knowledge lives in MongoDB, outside the checkpoint, so a
recovery replays learns that MongoDB already holds: every pattern, symbol and total there must
still equal the control's, which learns into a database of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pymongo import MongoClient
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from processor_image.storage.naming import database_name
from tests.mongo_server import mongo_server
from tests.processes import start_processor
from tests.support.manager import Manager, SettingsFactory, StartManager, auth

SEED = int(os.environ.get("CHAOS_SEED", "1212"))
RUN_S = float(os.environ.get("CHAOS_RUN_S", "20"))
SESSIONS = 3
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
                await self._drop_socket()

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

    async def _drop_socket(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()
            self.ws = None


async def chaos(
    manager: Manager, workers: list[Worker], rng: random.Random, until: float
) -> dict[str, int]:
    """Kill processors (SIGKILL) and hibernate sessions at seeded random moments."""
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
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(record.ref), signal.SIGKILL)
                done["kills"] += 1
        else:
            with contextlib.suppress(Exception):
                if await sessions.hibernate(sid):
                    done["hibernations"] += 1
    return done


def control_state(
    session_id: str, acked: list[Acked], mongo_url: str | None = None
) -> dict[str, Any]:
    """The state of a processor that never crashed, fed exactly the acknowledged requests.

    With ``mongo_url`` it learns into MongoDB, in the database of ``control-<session id>``.
    """
    env = {"PROCESSOR_NAME": f"session-{session_id}", "KB_ID": session_id, "STORAGE": "memory"}
    if mongo_url is not None:
        env |= {"STORAGE": "mongodb", "MONGO_URL": mongo_url, "KB_ID": f"control-{session_id}"}
    with start_processor(session_id, **env) as control, httpx.Client(base_url=control.url) as c:
        for method, path, body in acked:
            reply = c.request(
                method, path, content=body, headers={"content-type": "application/json"}
            )
            assert reply.status_code == 200, (path, reply.text)
        state: dict[str, Any] = c.get("/state").json()
        return state


def knowledge(mongo_url: str, kb_id: str) -> dict[str, list[dict[str, Any]]]:
    """Every counted document of a knowledge base, without ids and op marks."""
    with MongoClient(mongo_url) as client:
        db = client[database_name(kb_id)]
        return {
            name: sorted(db[name].find({}, {"_id": 0, "ops": 0}), key=repr)
            for name in ("patterns_kb", "symbols_kb", "metadata")
        }


def assert_each_learn_counted_once(
    learned: dict[str, list[dict[str, Any]]], control: dict[str, list[dict[str, Any]]], failed: int
) -> None:
    """With ``failed`` requests that got no success answer, MongoDB may hold their learns or not.

    A request that failed after the processor wrote to MongoDB is not acknowledged, so the
    control never sees it, yet its learn stays (and the proxy never resends such a request on a
    shared knowledge base). Each failed request learns at most one pattern once: every pattern's
    frequency is its control's plus 0 to ``failed``. A replayed acknowledged learn counted twice
    would push a pattern past that, or (with no failures) break the exact equality above.
    """
    ours = {doc["name"]: doc["frequency"] for doc in learned["patterns_kb"]}
    theirs = {doc["name"]: doc["frequency"] for doc in control["patterns_kb"]}
    assert set(theirs) <= set(ours), "an acknowledged learn is missing"
    extra = {name: ours[name] - theirs.get(name, 0) for name in ours}
    assert all(more >= 0 for more in extra.values()), extra
    assert sum(extra.values()) <= failed, (extra, failed)


def comparable(state: dict[str, Any]) -> dict[str, Any]:
    """A state minus what observe computed from the knowledge base at the time, and the kb_id.

    A replay on MongoDB observes against a knowledge base that already holds the learns that
    came later, so the predictions it leaves differ; the knowledge itself is compared apart.
    The control learns into a database of its own, so its manifest names another kb_id.
    """
    kept = {key: value for key, value in state.items() if "prediction" not in key}
    kept["manifest"] = {k: v for k, v in state["manifest"].items() if k != "kb_id"}
    return kept


@pytest.fixture(name="mongo_url", scope="module")
def fx_mongo_url() -> Iterator[str]:
    with mongo_server() as url:
        yield url


@pytest.mark.parametrize("storage", ["memory", pytest.param("mongodb", marks=pytest.mark.mongo)])
@pytest.mark.parametrize("seed", [SEED])
async def test_no_acknowledged_write_is_lost_or_applied_twice(
    start_manager: StartManager,
    make_settings: SettingsFactory,
    seed: int,
    storage: str,
    request: pytest.FixtureRequest,
) -> None:
    mongo_url: str | None = None
    options: dict[str, Any] = {}
    if storage == "mongodb":
        mongo_url = request.getfixturevalue("mongo_url")
        options = {"processor_storage": "mongodb", "mongo_url": mongo_url}
    manager = await start_manager(
        make_settings(
            reconcile_interval_s=1, checkpoint_interval_s=2, checkpoint_max_entries=40, **options
        )
    )
    rng = random.Random(seed)
    workers = [
        Worker(manager, await manager.create(), random.Random(rng.random()))
        for _ in range(SESSIONS)
    ]
    until = time.monotonic() + RUN_S
    try:
        done, *_ = await asyncio.gather(
            chaos(manager, workers, random.Random(rng.random()), until),
            *(worker.run(until) for worker in workers),
        )
    finally:
        for worker in workers:
            await worker._drop_socket()
    assert done["kills"] >= 5
    for worker in workers:
        sid = worker.session["session_id"]
        final = await manager.client.get(f"/session/{sid}/state", headers=auth(worker.session))
        assert final.status_code == 200, final.text
        expected = await asyncio.to_thread(control_state, sid, worker.acked, mongo_url)
        assert len(worker.acked) > 20
        if mongo_url is None:
            assert final.json() == expected, f"session {sid}: {len(worker.acked)} acknowledged"
            continue
        assert comparable(final.json()) == comparable(expected)
        learned = knowledge(mongo_url, sid)
        assert learned["patterns_kb"], "the workload learned nothing"
        control = knowledge(mongo_url, f"control-{sid}")
        if worker.failed == 0:
            assert learned == control, f"session {sid}"
        else:
            assert_each_learn_counted_once(learned, control, worker.failed)
    print(
        f"chaos {storage} seed {seed}: {done}, acknowledged {[len(w.acked) for w in workers]}, "
        f"failed {[w.failed for w in workers]}"
    )
