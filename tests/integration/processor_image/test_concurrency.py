"""Many clients at once, HTTP and WebSocket mixed: every observation counted once, in client order.

The one lock (spec §7.1) is what makes this hold; a client's own observations must also keep
their order in STM.
"""

from __future__ import annotations

import json
import threading
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


def test_health_keeps_answering_while_a_long_sequence_holds_the_lock(
    processor: RunningProcessor, kato: httpx.Client
) -> None:
    """Health replies keep arriving while one request runs 5,000 predicting observations.

    No timing is asserted: a service that blocked its loop for the whole sequence answers at most
    the one or two polls that came before it started (checked with the yield disabled: 0-2).
    """
    kato.post("/genes/update", json={"genes": {"max_pattern_length": 10}})
    observations = [{"strings": [f"s{n % 3}", f"t{n % 5}"]} for n in range(5_000)]
    body = json.dumps({"observations": observations}).encode()
    done = threading.Event()
    answered_meanwhile = 0

    def poll_health() -> None:
        nonlocal answered_meanwhile
        with httpx.Client(base_url=processor.url, timeout=60) as client:
            while not done.is_set():
                assert client.get("/health").json()["status"] == "healthy"
                if not done.is_set():
                    answered_meanwhile += 1
                done.wait(0.01)

    poller = threading.Thread(target=poll_health)
    poller.start()
    try:
        reply = kato.post(
            "/observe-sequence",
            content=body,
            headers={"content-type": "application/json"},
            timeout=120,
        )
    finally:
        done.set()
        poller.join()
    assert reply.status_code == 200
    assert reply.json()["results"][-1]["time"] == 5_000
    assert answered_meanwhile >= 6
