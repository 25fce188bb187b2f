"""A slow MongoDB holds the request waiting on it, not the processor: ``/health`` keeps answering,
and requests queued behind the held one still run after it, in the order they came.

The database is real (SecantusDB, or ``MONGO_URL``) behind a loopback relay that holds its
traffic (``tests.support.relay``), as a stalled server or network would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests.mongo_server import mongo_server
from tests.processes import RunningProcessor, start_processor
from tests.support.knowledge_bases import new_kb_id
from tests.support.relay import HeldRelay

pytestmark = pytest.mark.mongo

HOLD_S = 3.0
"""How long the database is held: well past the bound ``/health`` must answer within."""
HEALTH_BOUND_S = 1.0
"""Generous on a loaded 2-core machine; a blocked event loop answers only after ``HOLD_S``."""


@pytest.fixture(name="relay", scope="module")
def fx_relay() -> Iterator[tuple[HeldRelay, str]]:
    """A relay in front of a real MongoDB, and the URL that reaches the database through it."""
    with mongo_server() as url:
        parts = urlsplit(url)
        assert parts.hostname is not None
        assert parts.port is not None
        with HeldRelay(parts.hostname, parts.port) as relay:
            credentials = parts.netloc.rpartition("@")[0]
            netloc = f"{credentials}@" if credentials else ""
            yield relay, urlunsplit(parts._replace(netloc=f"{netloc}127.0.0.1:{relay.port}"))


@pytest.fixture(name="processor")
def fx_processor(relay: tuple[HeldRelay, str]) -> Iterator[RunningProcessor]:
    with start_processor(
        "slow-db", STORAGE="mongodb", MONGO_URL=relay[1], KB_ID=new_kb_id()
    ) as running:
        yield running


class InFlight(threading.Thread):
    """One request sent from its own thread, so the test can look at the processor meanwhile."""

    def __init__(self, url: str, path: str, body: object) -> None:
        super().__init__(daemon=True)
        self._url, self._path, self._body = url, path, body
        self.response: httpx.Response | None = None

    def run(self) -> None:
        with httpx.Client(base_url=self._url, timeout=30) as client:
            self.response = client.post(self._path, json=self._body)


def test_health_answers_while_a_slow_database_holds_an_observe(
    relay: tuple[HeldRelay, str], processor: RunningProcessor
) -> None:
    held_relay = relay[0]
    with httpx.Client(base_url=processor.url, timeout=HEALTH_BOUND_S) as client:
        for word in ("a", "b", "c"):
            client.post("/observe", json={"strings": [word]}).raise_for_status()
        client.post("/learn").raise_for_status()
        client.post("/observe", json={"strings": ["a"]}).raise_for_status()

        held_relay.hold()
        try:
            observe = InFlight(processor.url, "/observe", {"strings": ["b"], "unique_id": "held"})
            observe.start()
            time.sleep(0.3)  # the observe reaches the engine and waits on the database
            queued = InFlight(processor.url, "/observe", {"strings": ["c"], "unique_id": "next"})
            queued.start()
            answered = 0
            deadline = time.monotonic() + HOLD_S
            while time.monotonic() < deadline:
                health = client.get("/health")  # times out (fails) past HEALTH_BOUND_S
                assert health.json()["status"] == "healthy"
                answered += 1
                time.sleep(0.1)
            assert observe.is_alive(), "the database was not holding the observe"
            assert queued.is_alive(), "a request overtook the one holding the engine"
        finally:
            held_relay.release()
        observe.join(timeout=30)
        queued.join(timeout=30)

    assert answered >= 5
    assert observe.response is not None
    assert queued.response is not None
    assert observe.response.status_code == queued.response.status_code == 200
    first, second = (r.json()["time"] for r in (observe.response, queued.response))
    assert second == first + 1  # one at a time, in the order they came
    assert (
        int(queued.response.headers["x-kato-seq"])
        == int(observe.response.headers["x-kato-seq"]) + 1
    )
    with httpx.Client(base_url=processor.url, timeout=10) as client:
        assert client.get("/predictions", params={"unique_id": "held"}).json()["predictions"]
