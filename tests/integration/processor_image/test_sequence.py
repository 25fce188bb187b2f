"""The mutation counter the manager journals by: ``X-Kato-Seq``, ``state.seq``, replays."""

from __future__ import annotations

import json
from typing import Any

import httpx
from websockets.sync.client import connect

from tests.processes import RunningProcessor, start_processor

JSON = {"content-type": "application/json"}


def seq(response: httpx.Response) -> int:
    assert response.status_code == 200, response.text
    return int(response.headers["x-kato-seq"])


def test_every_mutating_request_gets_the_next_number(kato: httpx.Client) -> None:
    start = int(kato.get("/state").json()["seq"])
    numbers = [
        seq(kato.post("/observe", json={"strings": ["a"]})),
        seq(kato.post("/observe-sequence", json={"observations": [{"strings": ["b"]}]})),
        seq(kato.post("/learn")),
        seq(kato.post("/clear-stm")),
        seq(kato.post("/genes/update", json={"genes": {"recall_threshold": 0.2}})),
        seq(kato.post("/clear-all")),
    ]
    assert numbers == list(range(start + 1, start + 7))
    assert "x-kato-seq" not in kato.get("/stm").headers
    refused = kato.post("/genes/update", json={"genes": {"no_such_gene": 1}})
    assert refused.status_code == 400
    assert "x-kato-seq" not in refused.headers
    assert kato.get("/state").json()["seq"] == start + 6


def test_a_replayed_request_takes_the_number_it_is_given(kato: httpx.Client) -> None:
    replayed = kato.post("/observe", json={"strings": ["a"]}, headers={"X-Kato-Replay-Seq": "500"})
    assert seq(replayed) == 500
    assert seq(kato.post("/learn")) == 501


def test_a_checkpoint_resumes_its_numbering_in_a_fresh_processor(kato: httpx.Client) -> None:
    kato.post("/observe", json={"strings": ["a"]}, headers={"X-Kato-Replay-Seq": "41"})
    snapshot = kato.get("/state")
    with start_processor("p2") as fresh, httpx.Client(base_url=fresh.url) as other:
        assert seq(other.put("/state", content=snapshot.content, headers=JSON)) == 41
        assert seq(other.post("/learn")) == 42


def test_websocket_replies_carry_the_number_only_on_a_journaled_socket(
    processor: RunningProcessor, kato: httpx.Client
) -> None:
    url = processor.url.replace("http", "ws") + "/ws"
    observe = json.dumps(
        {"type": "observe", "payload": {"strings": ["a"], "vectors": [], "emotives": {}}}
    )
    with connect(url) as plain:
        plain.send(observe)
        assert "seq" not in json.loads(plain.recv(timeout=10))["data"]
    before = int(kato.get("/state").json()["seq"])
    with connect(url, additional_headers={"X-Kato-Journal": "1"}) as journaled:
        replies: list[dict[str, Any]] = []
        for frame in (observe, '{"type": "get_stm"}', '{"type": "learn"}', "not json"):
            journaled.send(frame)
            replies.append(json.loads(journaled.recv(timeout=10)))
    assert [r["data"].get("seq") for r in replies] == [before + 1, None, before + 2, None]


def test_a_websocket_message_over_http_answers_as_the_socket_would(kato: httpx.Client) -> None:
    frame = {
        "type": "observe",
        "payload": {"strings": ["a"], "vectors": [], "emotives": {}, "unique_id": "u1"},
    }
    reply = kato.post("/message", content=json.dumps(frame), headers={"X-Kato-Replay-Seq": "7"})
    assert seq(reply) == 7
    assert reply.json()["type"] == "observation_result"
    assert reply.json()["data"]["unique_id"] == "u1"
    assert kato.get("/stm").json()["stm"] == [["a"]]


def test_replaying_acknowledged_requests_on_a_checkpoint_reproduces_the_state() -> None:
    """The engine is deterministic given its inputs and the unique ids it assigned."""
    with (
        start_processor() as first,
        start_processor() as second,
        httpx.Client(base_url=first.url) as a,
        httpx.Client(base_url=second.url) as b,
    ):
        a.post("/observe", json={"strings": ["x"]})
        a.post("/learn")
        checkpoint = a.get("/state").content
        journal: list[tuple[int, str, dict[str, Any]]] = []
        for words in ("a b", "a c", "b c"):
            for word in words.split():
                reply = a.post("/observe", json={"strings": [word], "emotives": {"joy": 0.5}})
                body = {"strings": [word], "emotives": {"joy": 0.5}}
                journal.append(
                    (seq(reply), "/observe", {**body, "unique_id": reply.json()["unique_id"]})
                )
            reply = a.post("/learn")
            journal.append((seq(reply), "/learn", {}))
        b.put("/state", content=checkpoint, headers=JSON)
        for number, path, body in journal:
            b.post(path, json=body, headers={"X-Kato-Replay-Seq": str(number)})
        assert b.get("/state").json() == a.get("/state").json()
        assert b.get("/predictions").json() == a.get("/predictions").json()
