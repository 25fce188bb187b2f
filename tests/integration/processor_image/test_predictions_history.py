"""``PREDICTIONS_HISTORY`` over HTTP: a processor answers only its last N stored predictions, and
its snapshot carries exactly those into the processor it is restored in."""

from __future__ import annotations

import httpx
import pytest

from tests.processes import start_processor

JSON = {"content-type": "application/json"}


def predict_n_times(client: httpx.Client, count: int) -> None:
    """Learn a b c, then ``count`` observations that each store predictions (``o0``…)."""
    for word in "abc":
        client.post("/observe", json={"strings": [word]})
    client.post("/learn")
    client.post("/observe", json={"strings": ["a"]})
    for n in range(count):
        client.post("/observe", json={"strings": ["b"], "unique_id": f"o{n}"})


def stored(client: httpx.Client, unique_id: str) -> list[object]:
    found: list[object] = client.get("/predictions", params={"unique_id": unique_id}).json()[
        "predictions"
    ]
    return found


def test_only_the_last_records_answer_and_a_snapshot_carries_just_those() -> None:
    with (
        start_processor("h1", PREDICTIONS_HISTORY="3") as first,
        start_processor("h2", PREDICTIONS_HISTORY="3") as second,
        httpx.Client(base_url=first.url) as a,
        httpx.Client(base_url=second.url) as b,
    ):
        predict_n_times(a, 10)
        assert [bool(stored(a, f"o{n}")) for n in range(10)] == [False] * 7 + [True] * 3
        snapshot = a.get("/state")
        knowledge = snapshot.json()["knowledge"]
        assert [r["unique_id"] for r in knowledge["predictions"]] == ["o7", "o8", "o9"]

        assert b.put("/state", content=snapshot.content, headers=JSON).status_code == 200
        for n in range(10):
            assert stored(b, f"o{n}") == stored(a, f"o{n}")
        b.post("/observe", json={"strings": ["b"], "unique_id": "o10"})  # evicts o7 there too
        assert stored(b, "o7") == []
        assert stored(b, "o10")


def test_zero_keeps_every_record_as_the_reference() -> None:
    with (
        start_processor("h3", PREDICTIONS_HISTORY="0") as running,
        httpx.Client(base_url=running.url) as client,
    ):
        predict_n_times(client, 10)
        assert all(stored(client, f"o{n}") for n in range(10))


def test_a_bad_setting_stops_the_processor_naming_it() -> None:
    with (
        pytest.raises(RuntimeError, match="PREDICTIONS_HISTORY"),
        start_processor("h4", PREDICTIONS_HISTORY="-5"),
    ):
        pass
