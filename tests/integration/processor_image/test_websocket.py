"""``WS /ws``: every message type, errors that keep the socket open, and closes (spec §7.3)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.processes import RunningProcessor


@pytest.fixture(name="ws")
def fx_ws(processor: RunningProcessor, kato: httpx.Client) -> Any:
    with connect(processor.url.replace("http", "ws") + "/ws") as socket:
        yield socket


def ask(ws: ClientConnection, kind: str, payload: Any = None) -> dict[str, Any]:
    message: dict[str, Any] = {"type": kind}
    if payload is not None:
        message["payload"] = payload
    ws.send(json.dumps(message))
    reply: dict[str, Any] = json.loads(ws.recv(timeout=10))
    return reply


def observation(*strings: str, **extra: Any) -> dict[str, Any]:
    return {"strings": list(strings), "vectors": [], "emotives": {}, **extra}


def test_seed_usage_over_websocket(ws: ClientConnection) -> None:
    for word in ("hello", "world", "test"):
        reply = ask(ws, "observe", observation(word))
        assert reply["type"] == "observation_result"
        assert reply["data"]["status"] == "okay"
        assert reply["data"]["processor_id"] == "p1"
        assert reply["data"]["unique_id"].startswith("ws-")
    assert ask(ws, "get_stm") == {
        "type": "stm",
        "data": {"stm": [["hello"], ["world"], ["test"]], "processor_id": "p1"},
    }
    learned = ask(ws, "learn")
    assert learned == {
        "type": "learn_result",
        "data": {
            "pattern_name": "PTRN|386fbb12926e8e015a1483990df913e8410f94ce",
            "processor_id": "p1",
        },
    }
    ask(ws, "observe", observation("hello", unique_id="w1"))
    ask(ws, "observe", observation("world", unique_id="w2"))
    cached = ask(ws, "get_predictions", {})
    assert cached["type"] == "predictions"
    assert [p["similarity"] for p in cached["data"]["predictions"]] == [0.8]
    assert (
        ask(ws, "get_predictions", {"unique_id": "w2"})["data"]["predictions"]
        == cached["data"]["predictions"]
    )
    assert ask(ws, "clear_stm") == {
        "type": "status",
        "data": {"status": "okay", "message": "stm-cleared", "processor_id": "p1"},
    }
    assert ask(ws, "clear_all")["data"]["message"] == "all-cleared"
    pong = ask(ws, "ping")
    assert pong["type"] == "pong"
    assert pong["data"]["processor_id"] == "p1"
    assert isinstance(pong["data"]["timestamp"], float)


def test_websocket_and_http_share_one_processor(ws: ClientConnection, kato: httpx.Client) -> None:
    ask(ws, "observe", observation("a", path=["client"], metadata={"k": "v"}))
    assert kato.get("/stm").json()["stm"] == [["a"]]
    percept = kato.get("/percept-data").json()["percept_data"]
    assert percept["path"] == ["client", "KatoProcessor-p1-process"]
    assert percept["metadata"] == {"k": "v"}


@pytest.mark.parametrize(
    ("kind", "payload", "message"),
    [
        (
            "observe",
            {"strings": ["a"], "emotives": {}},
            "observe needs payload.vectors: a list of lists of numbers ([] for none)",
        ),
        (
            "observe",
            observation("a", unique_id=""),
            "Error: no unique_id in observe call from websocket",
        ),
        (
            "observe",
            {"strings": [1], "vectors": [], "emotives": {}},
            "strings must be a list of strings",
        ),
        (
            "get_predictions",
            {"other": 1},
            "get_predictions needs payload.unique_id: a string; send {} for the latest predictions",
        ),
        ("dance", None, "Unknown message type: dance"),
        (
            "observe",
            observation(vectors=[[1, 2], [1, 2, 3]]),
            "vectors cannot be added up: operands could not be broadcast together with shapes"
            " (2,) (3,) ",
        ),
        ("observe", observation("a", path=5), "path must be a list of strings"),
        ("observe", observation("a", metadata=[1]), "metadata must be an object"),
    ],
    ids=[
        "missing_key",
        "empty_unique_id",
        "wrong_types",
        "predictions_without_unique_id",
        "unknown_type",
        "vectors_that_cannot_broadcast",
        "path_not_a_list",
        "metadata_not_an_object",
    ],
)
def test_errors_are_messages_and_the_socket_stays_open(
    ws: ClientConnection, kind: str, payload: Any, message: str
) -> None:
    assert ask(ws, kind, payload) == {"type": "error", "data": {"message": message}}
    assert ask(ws, "ping")["type"] == "pong"


def test_payload_null_or_absent_is_an_empty_payload(ws: ClientConnection) -> None:
    ws.send(json.dumps({"type": "get_predictions", "payload": None}))
    assert json.loads(ws.recv(timeout=10))["type"] == "predictions"
    assert ask(ws, "get_predictions")["type"] == "predictions"


def test_observations_over_websocket_are_found_over_http_by_unique_id(
    ws: ClientConnection, kato: httpx.Client
) -> None:
    for word in ("x", "y", "z"):
        ask(ws, "observe", observation(word))
    ask(ws, "learn")
    ask(ws, "observe", observation("x", unique_id="from-ws"))
    reply = ask(ws, "observe", observation("y", unique_id="from-ws-2"))
    assert reply["data"]["time"] == 5
    found = kato.get("/predictions", params={"unique_id": "from-ws-2"}).json()["predictions"]
    assert [p["future"] for p in found] == [[["z"]]]
    assert ask(ws, "get_predictions", {"unique_id": "nobody"})["data"]["predictions"] == []


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ("not json", "Frame is not valid JSON"),
        (b"\x00\x01", "Frame is not valid JSON"),
        (b"\xff\xfe{", "Frame is not valid JSON"),
        ("[1, 2]", "Frame must be a JSON object"),
        ('"text"', "Frame must be a JSON object"),
        ("{}", 'Message needs a string "type"'),
        ('{"type": "get_predictions", "payload": {"unique_id": 5}}', "get_predictions needs"),
        ('{"type": 5}', 'Message needs a string "type"'),
        ('{"type": "ping", "payload": [1]}', '"payload" must be a JSON object'),
        ('{"type": "update_genes", "payload": {"genes": 3}}', "update_genes needs payload.genes"),
    ],
    ids=[
        "not_json",
        "binary_garbage",
        "binary_not_utf8",
        "array",
        "string",
        "type_missing",
        "unique_id_not_a_string",
        "type_not_a_string",
        "payload_not_an_object",
        "genes_not_an_object",
    ],
)
def test_a_malformed_frame_gets_an_error_message_and_the_socket_stays_open(
    ws: ClientConnection, frame: str | bytes, message: str
) -> None:
    ws.send(frame)
    reply = json.loads(ws.recv(timeout=10))
    assert reply["type"] == "error"
    assert reply["data"]["message"].startswith(message)
    assert ask(ws, "ping")["type"] == "pong"


def test_a_binary_frame_holding_a_message_is_answered(ws: ClientConnection) -> None:
    ws.send(json.dumps({"type": "ping"}).encode())
    assert json.loads(ws.recv(timeout=10))["type"] == "pong"


def test_genes_update_over_websocket_is_validated_like_http(
    ws: ClientConnection, kato: httpx.Client
) -> None:
    for genes, message in (
        ({"recall_threshold": 7}, "Invalid value for gene recall_threshold"),
        ({"persistence": 9, "bogus": 1}, "Unknown gene: bogus"),
        ({"max_predictions": -3}, "Invalid value for gene max_predictions"),
    ):
        reply = ask(ws, "update_genes", {"genes": genes})
        assert reply["type"] == "error"
        assert reply["data"]["message"].startswith(message)
    assert kato.get("/gene/persistence").json()["gene_value"] == 5
    assert ask(ws, "update_genes", {"genes": {"sort": False, "persistence": 9}}) == {
        "type": "status",
        "data": {"status": "okay", "message": "genes-updated", "processor_id": "p1"},
    }
    assert kato.get("/gene/SORT").json()["gene_value"] is False
    assert kato.get("/gene/persistence").json()["gene_value"] == 9
