"""Many clients at once, HTTP and WebSocket mixed: every observation counted once, in client order.

The one lock (spec §7.1) is what makes this hold; a client's own observations must also keep
their order in STM.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
from websockets.sync.client import connect

from tests.processes import RunningProcessor

PER_CLIENT = 40


def http_client(url: str, name: str) -> list[int]:
    with httpx.Client(base_url=url, timeout=30) as client:
        return [
            client.post("/observe", json={"strings": [f"{name}-{n:03}"]}).json()["time"]
            for n in range(PER_CLIENT)
        ]


def ws_client(url: str, name: str) -> list[int]:
    times = []
    with connect(url.replace("http", "ws") + "/ws") as socket:
        for n in range(PER_CLIENT):
            payload = {"strings": [f"{name}-{n:03}"], "vectors": [], "emotives": {}}
            socket.send(json.dumps({"type": "observe", "payload": payload}))
            times.append(json.loads(socket.recv(timeout=30))["data"]["time"])
    return times


def test_concurrent_http_and_ws_observations_are_each_counted_once_in_order(
    processor: RunningProcessor, kato: httpx.Client
) -> None:
    clients = [("h0", http_client), ("h1", http_client), ("h2", http_client)]
    clients += [("w0", ws_client), ("w1", ws_client), ("w2", ws_client)]
    with ThreadPoolExecutor(len(clients)) as pool:
        futures = {name: pool.submit(run, processor.url, name) for name, run in clients}
        times = {name: future.result() for name, future in futures.items()}

    total = PER_CLIENT * len(clients)
    every_time = sorted(t for client_times in times.values() for t in client_times)
    assert every_time == list(range(1, total + 1))
    for client_times in times.values():
        assert client_times == sorted(client_times)
    stm = kato.get("/stm").json()["stm"]
    assert len(stm) == total
    for name, _ in clients:
        own = [event[0] for event in stm if event[0].startswith(f"{name}-")]
        assert own == [f"{name}-{n:03}" for n in range(PER_CLIENT)]
    assert kato.get("/status").json()["time"] == total
