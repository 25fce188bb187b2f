"""The service on ``STORAGE=mongodb`` (a real MongoDB-wire server): the knowledge base outlives
the process, and a snapshot (without knowledge) restores a fresh processor on the same KB."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.mongo_server import mongo_server
from tests.processes import RunningProcessor, start_processor


@pytest.fixture(name="mongo_url", scope="module")
def fx_mongo_url() -> Iterator[str]:
    with mongo_server() as url:
        yield url


def on_mongodb(
    processor_id: str, mongo_url: str, kb_id: str
) -> contextlib.AbstractContextManager[RunningProcessor]:
    return start_processor(processor_id, STORAGE="mongodb", MONGO_URL=mongo_url, KB_ID=kb_id)


def learn(client: httpx.Client, *events: str) -> str:
    for event in events:
        client.post("/observe", json={"strings": [event], "emotives": {"joy": 0.5}})
    name: str = client.post("/learn").json()["pattern_name"]
    return name


def view(client: httpx.Client) -> list[Any]:
    def without_id(body: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in body.items() if k not in ("processor_id", "uptime")}

    return [
        without_id(client.get("/stm").json()),
        client.get("/gene/recall_threshold").json()["gene_value"],
        without_id(client.get("/predictions").json()),
        without_id(client.get("/predictions", params={"unique_id": "u2"}).json()),
        without_id(client.get("/cognition-data").json()),
        without_id(client.get("/status").json()),
    ]


def test_knowledge_outlives_the_process(mongo_url: str) -> None:
    with (
        on_mongodb("m1", mongo_url, "kb-restart") as first,
        httpx.Client(base_url=first.url) as client,
    ):
        client.post("/clear-all")
        name = learn(client, "hello", "world", "test")
        client.post("/observe", json={"strings": ["hello"]})
        client.post("/observe", json={"strings": ["world"], "unique_id": "u2"})
        stored = client.get("/predictions", params={"unique_id": "u2"}).json()["predictions"]
    assert stored

    with (
        on_mongodb("m2", mongo_url, "kb-restart") as second,
        httpx.Client(base_url=second.url) as client,
    ):
        assert client.get("/metrics").json()["patterns_learned"] == 1
        assert client.get("/status").json()["time"] == 0
        assert client.get("/stm").json()["stm"] == []
        pattern = client.get(f"/pattern/{name}").json()["pattern"]
        assert pattern["frequency"] == 1
        assert pattern["emotives"] == [{"joy": 0.5}]
        assert client.get("/predictions", params={"unique_id": "u2"}).json()["predictions"] == (
            stored
        )
        client.post("/observe", json={"strings": ["hello"]})
        client.post("/observe", json={"strings": ["world"]})
        assert client.get("/predictions").json()["predictions"][0]["future"] == [["test"]]


def test_snapshot_without_knowledge_restores_onto_the_same_kb(mongo_url: str) -> None:
    with (
        on_mongodb("s1", mongo_url, "kb-snapshot") as first,
        on_mongodb("s2", mongo_url, "kb-snapshot") as second,
        httpx.Client(base_url=first.url) as a,
        httpx.Client(base_url=second.url) as b,
    ):
        a.post("/clear-all")
        a.post("/genes/update", json={"genes": {"recall_threshold": 0.2}})
        learn(a, "a", "b", "c")
        learn(a, "a", "b", "d")
        a.post("/observe", json={"strings": ["a"], "emotives": {"fear": 0.2}, "unique_id": "u1"})
        a.post("/observe", json={"strings": ["b"], "unique_id": "u2"})
        snapshot = a.get("/state")
        assert snapshot.json()["knowledge"] is None

        restored = b.put(
            "/state", content=snapshot.content, headers={"content-type": "application/json"}
        )
        assert restored.status_code == 200, restored.text
        assert view(b) == view(a)
        for client in (a, b):
            client.post("/observe", json={"strings": ["c"], "unique_id": "n1"})
        assert view(b) == view(a)
