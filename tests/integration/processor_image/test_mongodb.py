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
from tests.support.knowledge_bases import knowledge


@pytest.fixture(name="mongo_url", scope="module")
def fx_mongo_url() -> Iterator[str]:
    with mongo_server() as url:
        yield url


JSON = {"content-type": "application/json"}


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


def sent(client: httpx.Client, journal: list[tuple[int, str, Any]], path: str, body: Any) -> Any:
    """Send a request and journal it as the manager would: its seq, path and body; the reply."""
    reply = client.post(path, json=body)
    assert reply.status_code == 200, reply.text
    if path == "/observe":
        body = {**body, "unique_id": reply.json()["unique_id"]}
    journal.append((int(reply.headers["X-Kato-Seq"]), path, body))
    return reply.json()


def test_a_replayed_learn_is_not_counted_twice_on_a_shared_kb(mongo_url: str) -> None:
    """A crashed session's processor restarts under the same id on the same KB, loads its
    checkpoint and replays the journal: every learn is already in MongoDB, so none counts again
    (explicit learns and auto-learns inside an observe-sequence alike); a new learn still does."""
    journal: list[tuple[int, str, Any]] = []
    with (
        on_mongodb("crashy", mongo_url, "kb-replay") as first,
        httpx.Client(base_url=first.url) as a,
    ):
        a.post("/clear-all")
        a.post("/observe", json={"strings": ["x"]})
        checkpoint = a.get("/state").content
        for word in ("a", "b"):
            sent(a, journal, "/observe", {"strings": [word], "emotives": {"joy": 0.5}})
        sent(a, journal, "/learn", {})
        sent(a, journal, "/genes/update", {"genes": {"max_pattern_length": 2}})
        observations = [{"strings": [w], "unique_id": f"s{i}"} for i, w in enumerate("abab")]
        results = sent(a, journal, "/observe-sequence", {"observations": observations})["results"]
        learned = [r["auto_learned_pattern"] for r in results if r["auto_learned_pattern"]]
        assert len(set(learned)) < len(learned)  # a pattern learned twice in one request
        expected = knowledge(mongo_url, "kb-replay")
        stored = a.get("/predictions", params={"unique_id": "s3"}).json()["predictions"]

    with (
        on_mongodb("crashy", mongo_url, "kb-replay") as second,
        httpx.Client(base_url=second.url) as b,
    ):
        assert b.put("/state", content=checkpoint, headers=JSON).status_code == 200
        for number, path, body in journal:
            reply = b.post(path, json=body, headers={"X-Kato-Replay-Seq": str(number)})
            assert reply.status_code == 200, reply.text
        assert knowledge(mongo_url, "kb-replay") == expected
        assert b.get("/predictions", params={"unique_id": "s3"}).json()["predictions"] == stored

        b.post("/clear-stm")
        b.post("/genes/update", json={"genes": {"max_pattern_length": 0}})
        learned_again = learn(b, "a", "b").removeprefix("PTRN|")
        before = {p["name"]: p["frequency"] for p in expected["patterns_kb"]}
        after = {
            p["name"]: p["frequency"] for p in knowledge(mongo_url, "kb-replay")["patterns_kb"]
        }
        assert after == {**before, learned_again: before.get(learned_again, 0) + 1}


def without_predictions(state: dict[str, Any]) -> dict[str, Any]:
    """A ``GET /state`` minus what observe computed from the knowledge base at the time.

    A replay observes against a shared knowledge base that already holds later learns (here
    another processor's), so the predictions it caches differ; the knowledge is compared apart.
    """
    return {key: value for key, value in state.items() if "prediction" not in key}


def test_a_replayed_clear_all_keeps_what_another_processor_learned_after_it(
    mongo_url: str,
) -> None:
    """A learns, clears all and learns again; B, on the same kb_id, learns after the clear. A
    restarts and replays its journal: its clear drops nothing (B's pattern stays), its learn
    from before the clear does not come back, its later learn counts once."""
    journal: list[tuple[int, str, Any]] = []
    with (
        on_mongodb("clearer", mongo_url, "kb-clear") as first,
        on_mongodb("bystander", mongo_url, "kb-clear") as other,
        httpx.Client(base_url=first.url) as a,
        httpx.Client(base_url=other.url) as b,
    ):
        for word in ("before", "clear"):
            sent(a, journal, "/observe", {"strings": [word]})
        sent(a, journal, "/learn", {})
        sent(a, journal, "/clear-all", {})
        for word in ("after", "clear"):
            sent(a, journal, "/observe", {"strings": [word], "emotives": {"joy": 0.5}})
        ours = sent(a, journal, "/learn", {})["pattern_name"]
        theirs = learn(b, "learned", "elsewhere")
        sent(a, journal, "/observe", {"strings": ["learned"]})
        expected = knowledge(mongo_url, "kb-clear")
        assert {p["name"] for p in expected["patterns_kb"]} == {
            ours.removeprefix("PTRN|"),
            theirs.removeprefix("PTRN|"),
        }
        before = a.get("/state").json()

    with (
        on_mongodb("clearer", mongo_url, "kb-clear") as second,
        httpx.Client(base_url=second.url) as c,
    ):
        for number, path, body in journal:
            reply = c.post(path, json=body, headers={"X-Kato-Replay-Seq": str(number)})
            assert reply.status_code == 200, reply.text
        assert knowledge(mongo_url, "kb-clear") == expected
        assert without_predictions(c.get("/state").json()) == without_predictions(before)
        # The recovered processor still predicts from both patterns (its index was not emptied).
        c.post("/observe", json={"strings": ["elsewhere"]})
        futures = [p["name"] for p in c.get("/predictions").json()["predictions"]]
        assert theirs in futures


def test_a_replayed_put_state_with_knowledge_keeps_later_learns(mongo_url: str) -> None:
    """``PUT /state`` carrying knowledge (a memory-store snapshot) replaces a shared store's:
    replayed after a crash it must not wipe what another processor learned after it."""
    with start_processor("donor") as donor, httpx.Client(base_url=donor.url) as d:
        learn(d, "donated", "pattern")
        snapshot = d.get("/state").content
    journal: list[tuple[int, str, Any]] = []
    with (
        on_mongodb("loader", mongo_url, "kb-load") as first,
        on_mongodb("bystander", mongo_url, "kb-load") as other,
        httpx.Client(base_url=first.url) as a,
        httpx.Client(base_url=other.url) as b,
    ):
        loaded = a.put("/state", content=snapshot, headers=JSON)
        assert loaded.status_code == 200, loaded.text
        journal.append((int(loaded.headers["X-Kato-Seq"]), "PUT /state", snapshot))
        for word in ("learned", "later"):
            sent(a, journal, "/observe", {"strings": [word]})
        sent(a, journal, "/learn", {})
        learn(b, "learned", "elsewhere")
        expected = knowledge(mongo_url, "kb-load")
        assert len(expected["patterns_kb"]) == 3

    with (
        on_mongodb("loader", mongo_url, "kb-load") as second,
        httpx.Client(base_url=second.url) as c,
    ):
        for number, path, body in journal:
            replay = {"X-Kato-Replay-Seq": str(number)}
            if path == "PUT /state":
                reply = c.put("/state", content=body, headers={**JSON, **replay})
            else:
                reply = c.post(path, json=body, headers=replay)
            assert reply.status_code == 200, reply.text
        assert knowledge(mongo_url, "kb-load") == expected
