"""``GET /state`` into ``PUT /state`` of a fresh processor: indistinguishable (hibernation)."""

from __future__ import annotations

import httpx

from tests.processes import start_processor


def drive(client: httpx.Client) -> None:
    client.post("/genes/update", json={"genes": {"recall_threshold": 0.2, "max_predictions": 5}})
    for words in ("a b c", "a b d", "x y z"):
        for word in words.split():
            client.post("/observe", json={"strings": [word], "emotives": {"joy": 0.5}})
        client.post("/learn")
    client.post("/observe", json={"strings": ["a"], "emotives": {"fear": 0.2}, "unique_id": "s1"})
    client.post("/observe", json={"strings": ["b"], "unique_id": "s2"})


def view(client: httpx.Client) -> list[object]:
    genes = ("recall_threshold", "max_predictions", "persistence", "max_pattern_length")
    return [
        client.get("/stm").json(),
        [client.get(f"/gene/{gene}").json() for gene in genes],
        client.get("/predictions").json(),
        client.get("/predictions", params={"unique_id": "s2"}).json(),
        client.get("/cognition-data").json(),
        client.get("/percept-data").json(),
        {k: v for k, v in client.get("/status").json().items() if k != "uptime"},
    ]


def test_snapshot_restores_into_a_second_processor() -> None:
    with (
        start_processor() as first,
        start_processor() as second,
        httpx.Client(base_url=first.url) as a,
        httpx.Client(base_url=second.url) as b,
    ):
        drive(a)
        snapshot = a.get("/state")
        assert snapshot.status_code == 200
        restored = b.put(
            "/state", content=snapshot.content, headers={"content-type": "application/json"}
        )
        assert restored.status_code == 200, restored.text
        assert view(b) == view(a)
        for client in (a, b):
            client.post("/observe", json={"strings": ["c"], "unique_id": "n1"})
            client.post("/learn")
            client.post("/observe", json={"strings": ["a"], "unique_id": "n2"})
            client.post("/observe", json={"strings": ["b"], "unique_id": "n3"})
        assert view(b) == view(a)
        assert b.get("/state").json() == a.get("/state").json()


def test_a_hand_made_snapshot_that_could_not_be_served_is_refused() -> None:
    with start_processor() as running, httpx.Client(base_url=running.url) as client:
        state = client.get("/state").json()
        for broken in (
            {**state, "predictions": [{"a": 1}]},
            {**state, "time": -1},
            {**state, "window": 0},
            {**state, "stm": [[]]},
        ):
            reply = client.put("/state", json=broken)
            assert reply.status_code == 422, reply.text
            assert reply.json()["error"]["code"] == "VALIDATION_ERROR"
        assert client.get("/predictions").status_code == 200
        assert client.get("/state").json() == state


def test_a_snapshot_with_bad_genes_is_refused_like_an_update_and_changes_nothing() -> None:
    with start_processor() as running, httpx.Client(base_url=running.url) as client:
        state = client.get("/state").json()
        for genes, code in (
            ({**state["genes"], "recall_threshold": 7}, "INVALID_GENE_VALUE"),
            ({**state["genes"], "max_predictions": -3}, "INVALID_GENE_VALUE"),
            ({**state["genes"], "persistence": -1}, "INVALID_GENE_VALUE"),
        ):
            reply = client.put("/state", json={**state, "genes": genes, "time": 7})
            assert reply.status_code == 400, reply.text
            assert reply.json()["error"]["code"] == code
        assert client.get("/state").json() == state
