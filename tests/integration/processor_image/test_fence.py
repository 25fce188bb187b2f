"""The hibernation fence (``POST``/``DELETE /fence``): after it, the processor's state is final."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.processes import RunningProcessor, start_processor


@pytest.fixture(name="fenceable", scope="module")
def fx_fenceable() -> Iterator[RunningProcessor]:
    with start_processor("fenced") as running:
        yield running


@pytest.fixture(name="client")
def fx_client(fenceable: RunningProcessor) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fenceable.url, timeout=30) as client:
        client.delete("/fence")
        assert client.post("/clear-all").status_code == 200
        yield client
        client.delete("/fence")


def observe(*strings: str) -> dict[str, Any]:
    return {"strings": list(strings), "vectors": [], "emotives": {}}


def ws_url(processor: RunningProcessor) -> str:
    return processor.url.replace("http", "ws") + "/ws"


def ask(socket: ClientConnection, kind: str, payload: Any) -> dict[str, Any]:
    socket.send(json.dumps({"type": kind, "payload": payload}))
    reply: dict[str, Any] = json.loads(socket.recv(timeout=10))
    return reply


def test_a_fenced_processor_refuses_every_change_and_read_but_health_and_state(
    client: httpx.Client,
) -> None:
    client.post("/observe", json=observe("kept"))
    fenced = client.post("/fence")
    assert fenced.status_code == 200
    assert fenced.json()["fenced"] is True

    for method, path, body in [
        ("POST", "/observe", observe("lost")),
        ("POST", "/observe-sequence", {"observations": [observe("lost")]}),
        ("POST", "/learn", None),
        ("POST", "/clear-stm", None),
        ("POST", "/genes/update", {"genes": {"recall_threshold": 0.5}}),
        ("GET", "/stm", None),
        ("GET", "/predictions", None),
        ("PUT", "/state", client.get("/state").json()),
    ]:
        reply = client.request(method, path, json=body)
        assert reply.status_code == 503, (method, path)
        assert reply.json()["error"]["code"] == "PROCESSOR_FENCED"
        assert "moving" in reply.json()["error"]["message"]

    assert client.get("/health").status_code == 200
    state = client.get("/state")
    assert state.status_code == 200
    assert state.json()["stm"] == [["kept"]]

    assert client.delete("/fence").json()["fenced"] is False
    assert client.post("/observe", json=observe("after")).status_code == 200
    assert client.get("/stm").json()["stm"] == [["kept"], ["after"]]


def test_the_fence_closes_open_websockets_with_1012_and_refuses_new_ones(
    client: httpx.Client, fenceable: RunningProcessor
) -> None:
    with connect(ws_url(fenceable)) as socket:
        assert ask(socket, "observe", observe("before"))["type"] == "observation_result"
        assert client.post("/fence").json()["closed_websockets"] == 1
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1012, "session hibernating")

    with connect(ws_url(fenceable)) as late:
        with contextlib.suppress(ConnectionClosed):  # the close may come before this frame
            late.send(json.dumps({"type": "observe", "payload": observe("lost")}))
        with pytest.raises(ConnectionClosed) as refused:
            late.recv(timeout=10)
    assert refused.value.rcvd is not None
    assert refused.value.rcvd.code == 1012
    assert client.get("/state").json()["stm"] == [["before"]]

    client.delete("/fence")
    with connect(ws_url(fenceable)) as again:
        assert ask(again, "get_stm", {})["data"]["stm"] == [["before"]]


def test_a_request_admitted_before_the_fence_is_whole_in_the_state_or_refused_whole(
    client: httpx.Client, fenceable: RunningProcessor
) -> None:
    """A long ``/observe-sequence`` holds the lock: the fence answers only after it."""
    count = 3000
    sequence = {"observations": [observe(f"s{i % 7}") for i in range(count)]}
    replies: list[httpx.Response] = []

    def send_sequence() -> None:
        with httpx.Client(base_url=fenceable.url, timeout=60) as other:
            replies.append(other.post("/observe-sequence", json=sequence))

    sender = threading.Thread(target=send_sequence)
    sender.start()
    time.sleep(0.05)  # most often the sequence holds the lock by now; either order is checked
    fenced = client.post("/fence")
    sender.join(60)
    assert fenced.status_code == 200
    state = client.get("/state").json()
    if replies[0].status_code == 200:
        assert state["time"] == count
    else:  # the fence came first: nothing of the sequence was applied
        assert replies[0].json()["error"]["code"] == "PROCESSOR_FENCED"
        assert state["time"] == 0


def test_the_fence_routes_are_in_the_openapi_document(client: httpx.Client) -> None:
    paths = client.get("/schema/openapi.json").json()["paths"]
    assert set(paths["/fence"]) == {"post", "delete"}
