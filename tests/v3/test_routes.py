"""Every v3 route, its success and error answers, as the v3 reference describes them (§1-§5)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.support.manager import Manager, SettingsFactory, StartManager

SESSION_ID = re.compile(r"^session-[0-9a-f]{32}-\d{13}$")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z$")
GATED = [
    ("DELETE", ""),
    ("POST", "/extend"),
    ("GET", "/config"),
    ("POST", "/config"),
    ("POST", "/observe"),
    ("POST", "/observe-sequence"),
    ("GET", "/stm"),
    ("POST", "/learn"),
    ("POST", "/clear-stm"),
    ("POST", "/clear-all"),
    ("GET", "/predictions"),
    ("POST", "/finalize-training"),
    ("GET", "/percept-data"),
    ("GET", "/cognition-data"),
]


async def _create(v3: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    body.setdefault("node_id", "node-a")
    response = await v3.post("/sessions", json=body)
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_create_answers_a_session_response_in_v3_formats(v3: httpx.AsyncClient) -> None:
    created = await _create(v3, metadata={"team": "x"})
    assert SESSION_ID.match(created["session_id"])
    assert created["node_id"] == "node-a"
    assert TIMESTAMP.match(created["created_at"])
    assert TIMESTAMP.match(created["expires_at"])
    assert created["ttl_seconds"] == 3600  # the literal, when none was asked for
    assert created["metadata"] == {"team": "x"}
    config = created["session_config"]
    assert len(config) == 22
    assert config["recall_threshold"] == 0.1
    assert config["stm_mode"] == "CLEAR"
    assert "fuzzy_token_threshold" not in config

    short = await _create(v3, ttl_seconds=120, config={"recall_threshold": 0.3, "bogus": 1})
    assert short["ttl_seconds"] == 120
    assert short["session_config"]["recall_threshold"] == 0.3
    # One bad value drops every override, and the session is still created (v3's quirk).
    dropped = await _create(v3, config={"recall_threshold": 0.3, "persistence": 500})
    assert dropped["session_config"]["recall_threshold"] == 0.1
    kept = await _create(v3, config={"fuzzy_token_threshold": 0.4, "stm_mode": "SIDEWAYS"})
    assert kept["session_config"]["fuzzy_token_threshold"] == 0.4
    assert kept["session_config"]["stm_mode"] == "CLEAR"

    read = await v3.get(f"/sessions/{created['session_id']}")
    assert read.status_code == 200
    assert "x-session-id" not in read.headers
    body = read.json()
    assert body["created_at"] == created["created_at"]
    assert 3590 <= body["ttl_seconds"] <= 3599
    assert body["metadata"] == {"team": "x"}
    count = await v3.get("/sessions/count")
    assert count.json() == {"active_session_count": 4}


@pytest.mark.parametrize(
    ("body", "loc", "kind"),
    [
        ({}, ["body", "node_id"], "missing"),
        ({"node_id": 5}, ["body", "node_id"], "value_error"),
        ({"node_id": "n", "ttl_seconds": -5}, ["body", "ttl_seconds"], "greater_than_equal"),
        ({"node_id": "n", "ttl_seconds": 1.5}, ["body", "ttl_seconds"], "value_error"),
    ],
)
async def test_create_refuses_a_bad_body_with_v3_422(
    v3: httpx.AsyncClient, body: dict[str, Any], loc: list[str], kind: str
) -> None:
    response = await v3.post("/sessions", json=body)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == loc
    assert error["type"] == kind
    assert {"type", "loc", "msg", "input"} <= set(error)


async def test_malformed_json_is_422(v3: httpx.AsyncClient) -> None:
    response = await v3.post(
        "/sessions", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


async def test_unknown_sessions_get_the_gate_404_everywhere_but_get_and_exists(
    v3: httpx.AsyncClient,
) -> None:
    sid = "session-00000000000000000000000000000000-1767225600123"
    for method, route in GATED:
        response = await v3.request(method, f"/sessions/{sid}{route}", json={})
        assert response.status_code == 404, (method, route)
        assert response.json() == {
            "error": {
                "code": "SESSION_NOT_FOUND",
                "message": f"Session {sid} not found or expired",
                "session_id": sid,
            }
        }
    read = await v3.get(f"/sessions/{sid}")
    assert read.status_code == 404
    assert read.json() == {"detail": f"Session {sid} not found or expired"}
    # Every answer carries a trace id: the request's own, else a new one.
    assert re.match(r"^kato-[0-9a-f]{32}$", read.headers["x-trace-id"])
    echoed = await v3.get(f"/sessions/{sid}/stm", headers={"X-Trace-ID": "abc-1"})
    assert echoed.headers["x-trace-id"] == "abc-1"
    exists = await v3.get(f"/sessions/{sid}/exists")
    assert exists.json() == {"exists": False, "expired": False, "session_id": sid}


async def test_observe_learn_predict_and_the_session_reads(v3: httpx.AsyncClient) -> None:
    sid = (await _create(v3))["session_id"]
    first = await v3.post(f"/sessions/{sid}/observe", json={"strings": ["b", "a"]})
    assert first.status_code == 200
    assert first.headers["x-session-id"] == sid
    result = first.json()
    assert result["status"] == "okay"
    assert result["session_id"] == sid
    assert result["processor_id"] == "node-a"
    assert result["stm_length"] == 1
    assert result["time"] == 1
    assert re.match(r"^obs-[0-9a-f]{32}$", result["unique_id"])
    assert result["auto_learned_pattern"] is None
    # Neither strings nor vectors: time counts, STM does not change.
    empty = (await v3.post(f"/sessions/{sid}/observe", json={"emotives": {"joy": 1.0}})).json()
    assert (empty["time"], empty["stm_length"]) == (2, 1)
    bad = await v3.post(f"/sessions/{sid}/observe", json={"strings": [1]})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "strings", 0]
    # Vectors the engine cannot add up: a clear 4xx with the reason, and STM untouched.
    refused = await v3.post(
        f"/sessions/{sid}/observe", json={"vectors": [[1.0, 2.0], [1.0, 2.0, 3.0]]}
    )
    assert 400 <= refused.status_code < 500
    assert "vectors" in refused.json()["detail"]

    stm = (await v3.get(f"/sessions/{sid}/stm")).json()
    assert stm == {"stm": [["a", "b"]], "session_id": sid, "length": 1}
    percept = (await v3.get(f"/sessions/{sid}/percept-data")).json()
    assert percept["node_id"] == "node-a"
    assert set(percept["percept_data"]) == {"strings", "vectors", "emotives", "path", "metadata"}
    cognition = (await v3.get(f"/sessions/{sid}/cognition-data")).json()
    assert cognition["cognition_data"]["short_term_memory"] == [["a", "b"]]
    assert cognition["cognition_data"]["time"] == 2

    await v3.post(f"/sessions/{sid}/observe", json={"strings": ["c"]})
    learned = (await v3.post(f"/sessions/{sid}/learn")).json()
    assert learned["status"] == "learned"
    assert re.match(r"^PTRN\|[0-9a-f]{40}$", learned["pattern_name"])
    assert learned["processor_id"] is None
    assert learned["pattern_name"] in learned["message"]
    empty_learn = await v3.post(f"/sessions/{sid}/learn")
    assert empty_learn.status_code == 400
    assert empty_learn.json() == {"detail": "Cannot learn from empty STM"}
    # Fewer than 2 symbols: "learned", no pattern, STM emptied all the same.
    await v3.post(f"/sessions/{sid}/observe", json={"strings": ["solo"]})
    solo = (await v3.post(f"/sessions/{sid}/learn")).json()
    assert (solo["status"], solo["pattern_name"]) == ("learned", "")
    assert (await v3.get(f"/sessions/{sid}/stm")).json()["length"] == 0

    for event in (["a", "b"], ["c"]):
        await v3.post(f"/sessions/{sid}/observe", json={"strings": event})
    predicted = (await v3.get(f"/sessions/{sid}/predictions")).json()
    assert predicted["count"] == len(predicted["predictions"]) >= 1
    assert predicted["predictions"][0]["name"] == learned["pattern_name"]
    assert (predicted["processor_id"], predicted["time"], predicted["unique_id"]) == (
        None,
        None,
        None,
    )
    assert predicted["session_id"] == sid

    finalized = (await v3.post(f"/sessions/{sid}/finalize-training")).json()
    assert finalized["status"] == "completed"
    assert finalized["patterns_processed"] == 1
    assert finalized["node_id"] == "node-a"
    cleared = (await v3.post(f"/sessions/{sid}/clear-stm")).json()
    assert cleared == {"status": "cleared", "session_id": sid}
    assert (await v3.get(f"/sessions/{sid}/stm")).json()["stm"] == []
    wiped = (await v3.post(f"/sessions/{sid}/clear-all")).json()
    assert wiped == {"status": "cleared", "session_id": sid, "scope": "all"}
    assert (await v3.post(f"/sessions/{sid}/finalize-training")).json()["patterns_processed"] == 0

    deleted = await v3.delete(f"/sessions/{sid}")
    assert deleted.json() == {"status": "deleted", "session_id": sid}
    assert (await v3.delete(f"/sessions/{sid}")).json()["error"]["code"] == "SESSION_NOT_FOUND"


async def test_observe_sequence_with_v3_options(v3: httpx.AsyncClient) -> None:
    sid = (await _create(v3))["session_id"]
    await v3.post(f"/sessions/{sid}/observe", json={"strings": ["before"]})
    items = [{"strings": ["x"]}, {"strings": ["y"], "unique_id": "mine"}, {"strings": ["z"]}]
    isolated = (
        await v3.post(
            f"/sessions/{sid}/observe-sequence",
            json={"observations": items, "learn_after_each": True, "clear_stm_between": True},
        )
    ).json()
    assert isolated["status"] == "completed"
    assert isolated["isolated"] is True
    assert isolated["processor_id"] == "node-a"
    assert isolated["observations_processed"] == 3
    assert isolated["initial_stm_length"] == 1
    # The first item still sees the STM before it ("before", "x": a pattern); the others
    # each learn one symbol alone: "" (nothing stored).
    learned = isolated["auto_learned_patterns"]
    assert learned[0].startswith("PTRN|")
    assert learned[1:] == ["", ""]
    assert [r["stm_length"] for r in isolated["results"]] == [0, 0, 0]
    assert isolated["results"][1]["unique_id"] == "mine"
    assert re.match(r"^seq-obs-[0-9a-f]{32}$", isolated["results"][0]["unique_id"])
    assert [r["sequence_position"] for r in isolated["results"]] == [0, 1, 2]
    assert isolated["final_learned_pattern"] is None

    at_end = (
        await v3.post(
            f"/sessions/{sid}/observe-sequence",
            json={"observations": items, "learn_at_end": True},
        )
    ).json()
    assert at_end["isolated"] is False
    assert [r["stm_length"] for r in at_end["results"]] == [1, 2, 3]
    assert at_end["final_learned_pattern"].startswith("PTRN|")
    assert at_end["auto_learned_patterns"] == [at_end["final_learned_pattern"]]
    assert at_end["final_stm_length"] == 0

    nothing = (await v3.post(f"/sessions/{sid}/observe-sequence", json={"observations": []})).json()
    assert nothing["observations_processed"] == 0
    assert nothing["auto_learned_patterns"] == []
    missing = await v3.post(f"/sessions/{sid}/observe-sequence", json={})
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["body", "observations"]


async def test_config_read_and_update(v3: httpx.AsyncClient) -> None:
    sid = (await _create(v3))["session_id"]
    read = (await v3.get(f"/sessions/{sid}/config")).json()
    assert read["session_id"] == sid
    assert len(read["config"]) == 22
    refused = await v3.post(
        f"/sessions/{sid}/config", json={"recall_threshold": 2, "rank_sort_algo": "nope"}
    )
    assert refused.status_code == 400
    detail = refused.json()["detail"]
    assert detail["error"] == "Configuration validation failed"
    assert detail["validation_errors"]["recall_threshold"] == "Must be a number between 0.0 and 1.0"
    assert detail["validation_errors"]["rank_sort_algo"].startswith("Must be one of: potential")
    assert (await v3.get(f"/sessions/{sid}/config")).json()["config"]["recall_threshold"] == 0.1
    not_object = await v3.post(f"/sessions/{sid}/config", json=[1])
    assert not_object.status_code == 422

    updated = await v3.post(
        f"/sessions/{sid}/config",
        json={"config": {"recall_threshold": 0.5, "use_token_matching": False, "junk": 1}},
    )
    assert updated.json() == {
        "status": "okay",
        "message": "Configuration updated",
        "session_id": sid,
    }
    config = (await v3.get(f"/sessions/{sid}/config")).json()["config"]
    assert config["recall_threshold"] == 0.5
    assert config["use_token_matching"] is False
    assert config["sort_symbols"] is False  # coupled on update
    assert "junk" not in config
    # sort_symbols is the processor's sort gene: events now keep their order.
    await v3.post(f"/sessions/{sid}/observe", json={"strings": ["b", "a"]})
    assert (await v3.get(f"/sessions/{sid}/stm")).json()["stm"] == [["b", "a"]]


async def test_extend(v3: httpx.AsyncClient) -> None:
    sid = (await _create(v3, ttl_seconds=100))["session_id"]
    extended = await v3.post(f"/sessions/{sid}/extend", params={"ttl_seconds": 7200})
    assert extended.json() == {"status": "extended", "session_id": sid, "ttl_seconds": 7200}
    bad = await v3.post(f"/sessions/{sid}/extend", params={"ttl_seconds": "soon"})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["query", "ttl_seconds"]
    gone = await v3.post(f"/sessions/{sid}/extend", params={"ttl_seconds": 0})
    assert gone.status_code == 200
    assert (await v3.get(f"/sessions/{sid}/exists")).json()["exists"] is False


async def test_non_session_routes(v3: httpx.AsyncClient) -> None:
    sid = (await _create(v3, node_id="shared"))["session_id"]
    for event in (["p"], ["q"]):
        await v3.post(f"/sessions/{sid}/observe", json={"strings": event})
    name = (await v3.post(f"/sessions/{sid}/learn")).json()["pattern_name"]

    root = (await v3.get("/")).json()
    assert (root["service"], root["version"], root["session_support"]) == (
        "KATO API",
        "3.10.1",
        True,
    )
    health = await v3.get("/health")
    assert health.status_code == 200
    assert health.json()["status"] == "healthy"
    assert health.json()["active_sessions"] == 1
    assert (await v3.get("/status")).json()["sessions"]["active_sessions"] == 1
    metrics = (await v3.get("/metrics")).json()
    assert metrics["sessions"]["active"] == 1
    assert (await v3.get("/stats", params={"minutes": 5})).json()["time_range_minutes"] == 5
    no_data = await v3.get("/metrics/cpu", params={"minutes": 3})
    assert no_data.status_code == 404
    assert no_data.json() == {"detail": "No data available for metric 'cpu' in the last 3 minutes"}
    for path in ("/cache/stats", "/connection-pools", "/distributed-stm/stats", "/concurrency"):
        assert (await v3.get(path)).status_code == 200, path
    invalidated = (await v3.post("/cache/invalidate", params={"session_id": sid})).json()
    assert invalidated["session_id"] == sid

    found = (await v3.get(f"/pattern/{name}", params={"node_id": "shared"})).json()
    assert found["pattern"]["status"] == "okay"
    assert found["pattern"]["pattern"]["pattern_data"] == [["p"], ["q"]]
    assert found["node_id"] == "shared_kato"
    unknown = await v3.get("/pattern/PTRN%7Cnothing", params={"node_id": "shared"})
    assert unknown.status_code == 200
    assert unknown.json()["pattern"]["status"] == "error"
    deprecated = (await v3.get("/percept-data", headers={"x-node-id": "n1"})).json()
    assert deprecated["node_id"] == "n1_kato"
    assert "warning" in deprecated
    assert (await v3.get("/symbols/stats")).json()["node_id"] == "default_node_kato"
    assert (await v3.get("/symbols/a/affinity")).status_code == 200

    assert (await v3.get("/nothing/here")).json() == {"detail": "Not Found"}
    wrong = await v3.put("/sessions")
    assert wrong.status_code == 405
    assert wrong.json() == {"detail": "Method Not Allowed"}


async def test_off_unless_switched_on(manager: Manager) -> None:
    response = await manager.client.post("/v3/sessions", json={"node_id": "n"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


async def test_at_the_root_the_manager_keeps_health_and_metrics(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    manager = await start_manager(
        make_settings(kato_v3_api="on", kato_v3_auth="none", kato_v3_prefix="/")
    )
    created = await manager.client.post("/sessions", json={"node_id": "root"})
    assert created.status_code == 200
    assert SESSION_ID.match(created.json()["session_id"])
    assert (await manager.client.get("/health")).json() == {"status": "ok"}
    assert (await manager.client.get("/metrics")).headers["content-type"].startswith("text/plain")
    assert (await manager.client.get("/status")).json()["sessions"]["active_sessions"] == 1


async def test_limits_hold_for_v3_creates(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    manager = await start_manager(
        make_settings(kato_v3_api="on", kato_v3_auth="none", max_sessions_per_user=1)
    )
    async with httpx.AsyncClient(base_url=manager.base_url + "/v3", timeout=30) as v3:
        assert (await v3.post("/sessions", json={"node_id": "busy"})).status_code == 200
        refused = await v3.post("/sessions", json={"node_id": "busy"})
        assert refused.status_code == 429
        assert "retry-after" in refused.headers
        assert isinstance(refused.json()["detail"], str)
        # Nothing of the refused session is left: it is not counted.
        assert (await v3.get("/sessions/count")).json() == {"active_session_count": 1}
        # A node is one user: another node still has room.
        assert (await v3.post("/sessions", json={"node_id": "free"})).status_code == 200
