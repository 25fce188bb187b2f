"""Every HTTP endpoint of the processor against a real service process (spec §6, §7, §9)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.processes import start_processor

WORKED_EXAMPLE = {
    "type": "prototypical",
    "name": "PTRN|386fbb12926e8e015a1483990df913e8410f94ce",
    "frequency": 1,
    "emotives": {},
    "matches": ["hello", "world"],
    "past": [],
    "present": [["hello"], ["world"]],
    "missing": [],
    "extras": [],
    "potential": 3.666666666667,
    "evidence": 0.6666666666666666,
    "similarity": 0.8,
    "fragmentation": 0.0,
    "snr": 1.0,
    "entropy": 1.056641667147,
    "hamiltonian": 0.630929753571,
    "grand_hamiltonian": 0.666666666667,
    "confluence": 0.888888888889,
    "sequence": [["hello"], ["world"], ["test"]],
    "future": [["test"]],
    "confidence": 1.0,
    "itfdf_similarity": 1.0,
}


def observe(kato: httpx.Client, *strings: str, **extra: Any) -> dict[str, Any]:
    response = kato.post("/observe", json={"strings": list(strings), **extra})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def learn_sequence(kato: httpx.Client, *events: str) -> str:
    for event in events:
        observe(kato, event)
    name: str = kato.post("/learn").json()["pattern_name"]
    return name


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    return body


def test_health_status_and_metrics(kato: httpx.Client) -> None:
    health = kato.get("/health").json()
    assert health["status"] == "healthy"
    assert health["processor_id"] == "p1"
    observe(kato, "a")
    observe(kato, "b")
    status = kato.get("/status").json()
    assert {
        k: status[k] for k in ("status", "processor_id", "processor_name", "stm_length", "time")
    } == {
        "status": "okay",
        "processor_id": "p1",
        "processor_name": "KatoProcessor",
        "stm_length": 2,
        "time": 2,
    }
    assert isinstance(status["uptime"], float)
    kato.post("/learn")
    metrics = kato.get("/metrics").json()
    assert {
        k: metrics[k]
        for k in ("processor_id", "observations_processed", "patterns_learned", "stm_size")
    } == {
        "processor_id": "p1",
        "observations_processed": 2,
        "patterns_learned": 1,
        "stm_size": 0,
    }


def test_observe_reply_and_generated_unique_id(kato: httpx.Client) -> None:
    body = observe(kato, "hello", emotives={"joy": 0.8}, unique_id="u1")
    assert body == {
        "status": "okay",
        "processor_id": "p1",
        "auto_learned_pattern": None,
        "time": 1,
        "unique_id": "u1",
    }
    generated = observe(kato, "x")["unique_id"]
    assert generated.startswith("obs-")
    assert len(generated.split("-")) == 3
    assert observe(kato, "y", unique_id="")["unique_id"].startswith("obs-")
    assert observe(kato, "z", unique_id=None)["unique_id"].startswith("obs-")
    assert len({generated, observe(kato, "x")["unique_id"]}) == 2


def test_an_offered_unique_id_is_used_when_the_body_names_none_and_echoed(
    kato: httpx.Client,
) -> None:
    """The manager offers an id (``X-Kato-Unique-Id``) for an observe it journaled ahead."""
    offered = {"X-Kato-Unique-Id": "obs-offered-1"}
    taken = kato.post("/observe", json={"strings": ["a"]}, headers=offered)
    assert taken.json()["unique_id"] == "obs-offered-1"
    assert taken.headers["x-kato-unique-id"] == "obs-offered-1"
    own = kato.post("/observe", json={"strings": ["b"], "unique_id": "mine"}, headers=offered)
    assert own.json()["unique_id"] == "mine"  # the body's id wins, and the reply says which
    assert own.headers["x-kato-unique-id"] == "mine"
    plain = kato.post("/observe", json={"strings": ["c"]})
    assert "x-kato-unique-id" not in plain.headers
    refused = kato.post(
        "/observe", json={"strings": [], "vectors": [[1, 2], [1, 2, 3]]}, headers=offered
    )
    assert refused.status_code == 422  # numbered all the same (time counted): id confirmed too
    assert refused.headers["x-kato-unique-id"] == "obs-offered-1"


def test_unknown_fields_make_an_empty_observation(kato: httpx.Client) -> None:
    response = kato.post("/observe", json={"data": {"strings": ["x"]}})
    assert response.status_code == 200
    assert kato.get("/stm").json() == {"stm": [], "processor_id": "p1"}


def test_lenient_number_coercion_in_emotives_and_vectors(kato: httpx.Client) -> None:
    assert (
        kato.post("/observe", json={"strings": ["a"], "emotives": {"joy": "0.5"}}).status_code
        == 200
    )
    assert kato.get("/cognition-data").json()["cognition_data"]["emotives"] == {"joy": 0.5}
    kato.post("/observe", json={"vectors": [["0.5", 1]]})
    kato.post("/observe", json={"vectors": [[0.5, 1.0]]})
    first, second = kato.get("/stm").json()["stm"][1:]
    assert first == second
    assert first[0].startswith("VECTOR|")


def test_worked_example_end_to_end(kato: httpx.Client) -> None:
    assert learn_sequence(kato, "hello", "world", "test") == WORKED_EXAMPLE["name"]
    observe(kato, "hello")
    observe(kato, "world")
    for method in ("GET", "POST"):
        assert kato.request(method, "/predictions").json() == {
            "predictions": [WORKED_EXAMPLE],
            "processor_id": "p1",
        }


def test_stm_learn_and_clear_with_aliases(kato: httpx.Client) -> None:
    observe(kato, "hello")
    observe(kato, "world")
    assert kato.get("/stm").json()["stm"] == [["hello"], ["world"]]
    assert kato.get("/short-term-memory").json()["stm"] == [["hello"], ["world"]]
    assert kato.post("/clear-short-term-memory").json() == {
        "status": "okay",
        "message": "stm-cleared",
        "processor_id": "p1",
    }
    assert kato.get("/stm").json()["stm"] == []
    observe(kato, "a", "b")
    learned = kato.post("/learn").json()
    assert learned["message"] == f"Learned pattern: {learned['pattern_name']}"
    assert kato.post("/clear-all-memory").json()["message"] == "all-cleared"


def test_learn_on_empty_stm_is_insufficient(kato: httpx.Client) -> None:
    assert kato.post("/learn").json() == {
        "pattern_name": "",
        "processor_id": "p1",
        "message": "Insufficient data for learning",
    }


def test_clear_all_resets_everything(kato: httpx.Client) -> None:
    learn_sequence(kato, "a", "b")
    observe(kato, "a")
    observe(kato, "b")
    kato.post("/clear-all")
    assert kato.get("/predictions").json()["predictions"] == []
    assert kato.get("/stm").json()["stm"] == []
    assert kato.get("/status").json()["time"] == 0
    assert kato.get("/metrics").json()["patterns_learned"] == 0


def test_predictions_by_unique_id_are_prefixed(kato: httpx.Client) -> None:
    learn_sequence(kato, "hello", "world", "test")
    observe(kato, "hello", unique_id="lonely")
    observe(kato, "world", unique_id="hit")
    expected = kato.get("/predictions").json()["predictions"]
    observe(kato, "other", unique_id="later")
    assert kato.get("/predictions", params={"unique_id": "hit"}).json()["predictions"] == expected
    assert expected[0]["name"].startswith("PTRN|")
    assert kato.post("/predictions", params={"unique_id": "lonely"}).json()["predictions"] == []


def test_pattern_lookup(kato: httpx.Client) -> None:
    name = learn_sequence(kato, "hello", "world", "test")
    expected = {
        "pattern": {
            "name": name,
            "pattern_data": [["hello"], ["world"], ["test"]],
            "length": 3,
            "frequency": 1,
            "emotives": [],
        },
        "processor_id": "p1",
    }
    assert kato.get(f"/pattern/{name.replace('|', '%7C')}").json() == expected
    assert kato.get(f"/pattern/{name.removeprefix('PTRN|')}").json() == expected
    body = assert_error(kato.get("/pattern/PTRN%7C" + "0" * 40), 404, "HTTP_404")
    assert body["error"]["message"] == f"Pattern PTRN|{'0' * 40} not found"


def test_genes_update_and_lookup(kato: httpx.Client) -> None:
    reply = kato.post("/genes/update", json={"genes": {"recall_threshold": 0.3}})
    assert reply.json() == {"status": "okay", "message": "genes-updated", "processor_id": "p1"}
    assert kato.get("/gene/recall_threshold").json() == {
        "gene_name": "recall_threshold",
        "gene_value": 0.3,
        "processor_id": "p1",
    }
    body = assert_error(kato.get("/gene/zzz"), 404, "HTTP_404")
    assert body["error"]["message"] == "Gene zzz not found"


def test_genes_update_with_an_unknown_name_changes_nothing(kato: httpx.Client) -> None:
    response = kato.post(
        "/genes/update", json={"genes": {"max_predictions": 7, "quiescence": 4, "smoothness": 9}}
    )
    body = assert_error(response, 400, "HTTP_400")
    assert body == {
        "error": {"code": "HTTP_400", "message": "Unknown gene: quiescence", "details": {}},
        "status": 400,
    }
    assert kato.get("/gene/max_predictions").json()["gene_value"] == 100
    assert kato.get("/gene/smoothness").json()["gene_value"] == 3


@pytest.mark.parametrize(
    ("genes", "code"),
    [
        ({"recall_threshold": 7}, "INVALID_GENE_VALUE"),
        ({"max_predictions": -3}, "INVALID_GENE_VALUE"),
        ({"persistence": -1}, "INVALID_GENE_VALUE"),
        ({"persistence": 9, "bogus": 1}, "HTTP_400"),
        ({"persistence": 9, "recall_threshold": "0.5"}, "INVALID_GENE_VALUE"),
    ],
)
def test_genes_update_rejects_bad_values_whole(
    kato: httpx.Client, genes: dict[str, Any], code: str
) -> None:
    assert_error(kato.post("/genes/update", json={"genes": genes}), 400, code)
    assert kato.get("/gene/persistence").json()["gene_value"] == 5
    assert kato.get("/gene/recall_threshold").json()["gene_value"] == 0.1
    assert kato.get("/gene/max_predictions").json()["gene_value"] == 100


@pytest.mark.parametrize("name", ["sort", "SORT"])
def test_sort_is_changed_under_its_public_and_internal_name(kato: httpx.Client, name: str) -> None:
    observe(kato, "z", "a")
    assert kato.post("/genes/update", json={"genes": {name: False}}).status_code == 200
    observe(kato, "z", "a")
    assert kato.get("/stm").json()["stm"] == [["a", "z"], ["z", "a"]]
    assert kato.get("/gene/SORT").json()["gene_value"] is False
    assert kato.get("/gene/sort").json()["gene_value"] is False


def test_percept_and_cognition_data_examples(kato: httpx.Client) -> None:
    observe(kato, "zebra", "apple", emotives={"joy": 0.8})
    assert kato.get("/percept-data").json() == {
        "percept_data": {
            "strings": ["zebra", "apple"],
            "vectors": [],
            "emotives": {"joy": 0.8},
            "path": ["KatoProcessor-p1-process"],
            "metadata": {},
        },
        "processor_id": "p1",
    }
    assert kato.get("/cognition-data").json() == {
        "cognition_data": {
            "predictions": [],
            "emotives": {"joy": 0.8},
            "symbols": ["apple", "zebra"],
            "command": "",
            "metadata": {},
            "path": [],
            "strings": [],
            "vectors": [],
            "short_term_memory": [["apple", "zebra"]],
        },
        "processor_id": "p1",
    }


def test_vectors_become_one_symbol(kato: httpx.Client) -> None:
    observe(kato, "multi", "modal", vectors=[[0.5, 0.5], [1.0, 0.0]])
    assert kato.get("/stm").json()["stm"] == [
        ["VECTOR|f11daefdddee30b6a7a043c084fad802f0553a99", "modal", "multi"]
    ]


def test_auto_learn_through_the_api(kato: httpx.Client) -> None:
    kato.post("/genes/update", json={"genes": {"max_pattern_length": 3}})
    observe(kato, "a")
    observe(kato, "b")
    assert (
        observe(kato, "c")["auto_learned_pattern"]
        == "PTRN|b98534b32c1d7489d4ce1a48724aa65aeecbdba9"
    )
    assert kato.get("/stm").json()["stm"] == [["c"]]
    kato.post("/clear-stm")
    observe(kato, "a")
    observe(kato, "b")
    (prediction,) = kato.get("/predictions").json()["predictions"]
    assert prediction["future"] == [["c"]]


def test_auto_learn_of_a_single_event(kato: httpx.Client) -> None:
    kato.post("/genes/update", json={"genes": {"max_pattern_length": 1}})
    assert observe(kato, "a")["auto_learned_pattern"] == ""
    assert kato.get("/stm").json()["stm"] == []
    assert (
        observe(kato, "a", "b")["auto_learned_pattern"]
        == "PTRN|395314cc2f2880a00c3e6e11f1e02d8b8c45a0e4"
    )
    assert kato.get("/stm").json()["stm"] == []


def test_learned_emotives_reach_the_pattern_and_its_predictions(kato: httpx.Client) -> None:
    for symbol, happiness, confidence in (("0", 0.1, 0.2), ("1", 0.5, 0.6), ("2", 0.9, 0.8)):
        observe(kato, symbol, emotives={"happiness": happiness, "confidence": confidence})
    name = kato.post("/learn").json()["pattern_name"]
    assert name == "PTRN|db33f21101265857f7923dccac3a2a29191646ee"
    averaged = {"happiness": 0.5, "confidence": 0.5333333333333333}
    assert kato.get(f"/pattern/{name}").json()["pattern"] == {
        "name": name,
        "pattern_data": [["0"], ["1"], ["2"]],
        "length": 3,
        "frequency": 1,
        "emotives": [averaged],
    }
    observe(kato, "0")
    observe(kato, "1")
    assert [p["emotives"] for p in kato.get("/predictions").json()["predictions"]] == [averaged]


def test_emotive_window_keeps_the_last_persistence_entries(kato: httpx.Client) -> None:
    for value in range(7):
        observe(kato, "p", emotives={"v": value})
        observe(kato, "q")
        name = kato.post("/learn").json()["pattern_name"]
    pattern = kato.get(f"/pattern/{name}").json()["pattern"]
    assert pattern["frequency"] == 7
    assert pattern["emotives"] == [{"v": 2.0}, {"v": 3.0}, {"v": 4.0}, {"v": 5.0}, {"v": 6.0}]
    observe(kato, "p")
    observe(kato, "q")
    assert kato.get("/predictions").json()["predictions"][0]["emotives"] == {"v": 4.0}


def test_observe_sequence_processes_in_order(kato: httpx.Client) -> None:
    reply = kato.post(
        "/observe-sequence",
        json={"observations": [{"strings": ["a"], "unique_id": "1"}, {"strings": ["b"]}, {}]},
    )
    assert reply.status_code == 200
    results = reply.json()["results"]
    assert [r["time"] for r in results] == [1, 2, 3]
    assert results[0]["unique_id"] == "1"
    assert kato.get("/stm").json()["stm"] == [["a"], ["b"]]


def test_observe_sequence_with_a_bad_item_is_refused_whole(kato: httpx.Client) -> None:
    kato.post("/observe", json={"strings": ["z"]})
    reply = kato.post(
        "/observe-sequence",
        json={
            "observations": [
                {"strings": ["a"]},
                {"vectors": [[1, 2], [1, 2, 3]]},
                {"strings": ["c"]},
            ]
        },
    )
    body = assert_error(reply, 422, "INVALID_OBSERVATION")
    assert body["error"]["details"] == {"index": 1}
    assert "X-Kato-Seq" not in reply.headers  # nothing applied: nothing to journal
    assert kato.get("/stm").json()["stm"] == [["z"]]
    assert kato.get("/status").json()["time"] == 1


def test_a_refused_observe_counts_time_and_is_numbered(kato: httpx.Client) -> None:
    """Spec §2.2: time goes up first, so a failed observation counts; the reply says so."""
    first = kato.post("/observe", json={"strings": ["z"]})
    reply = kato.post("/observe", json={"strings": ["a"], "vectors": [[1, 2], [1, 2, 3]]})
    assert_error(reply, 422, "INVALID_OBSERVATION")
    assert int(reply.headers["X-Kato-Seq"]) == int(first.headers["X-Kato-Seq"]) + 1
    assert kato.get("/status").json()["time"] == 2
    assert kato.get("/stm").json()["stm"] == [["z"]]


@pytest.mark.parametrize(
    ("method", "path", "content", "status", "code"),
    [
        ("POST", "/observe", b"invalid json", 422, "INVALID_JSON"),
        ("POST", "/observe", b'{"strings": [1, 2]}', 422, "VALIDATION_ERROR"),
        ("POST", "/observe", b'{"strings": "abc"}', 422, "VALIDATION_ERROR"),
        ("POST", "/observe", b'{"vectors": [[1, 2], [1, 2, 3]]}', 422, "INVALID_OBSERVATION"),
        ("POST", "/genes/update", b"{}", 422, "VALIDATION_ERROR"),
        (
            "POST",
            "/genes/update",
            b'{"genes": {"recall_threshold": "0.5"}}',
            400,
            "INVALID_GENE_VALUE",
        ),
        ("PUT", "/state", b'{"stm": 5}', 422, "VALIDATION_ERROR"),
        ("GET", "/no-such-route", b"", 404, "NOT_FOUND"),
        ("DELETE", "/stm", b"", 405, "METHOD_NOT_ALLOWED"),
        (
            "POST",
            "/observe",
            b'{"strings": ["' + b"a" * (1024 * 1024) + b'"]}',
            413,
            "BODY_TOO_LARGE",
        ),
    ],
    ids=[
        "malformed_json",
        "wrong_item_type",
        "wrong_field_type",
        "vectors_that_cannot_broadcast",
        "genes_missing",
        "gene_value_of_wrong_type",
        "state_of_wrong_shape",
        "unknown_route",
        "wrong_method",
        "oversized_body",
    ],
)
def test_bad_input_gets_a_specific_4xx(
    kato: httpx.Client, method: str, path: str, content: bytes, status: int, code: str
) -> None:
    response = kato.request(
        method, path, content=content, headers={"content-type": "application/json"}
    )
    assert_error(response, status, code)
    assert kato.get("/health").status_code == 200


def test_wrong_method_names_the_allowed_ones(kato: httpx.Client) -> None:
    response = kato.delete("/stm")
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert set(response.headers["allow"].replace(" ", "").split(",")) >= {"GET"}


@pytest.mark.parametrize(
    "content",
    [
        b'{"emotives": {"a": 1e400}}',
        b'{"vectors": [[1e400]]}',
        b'{"strings": ["\\ud800"]}',
        b'{"strings": ["\xff\xfe"]}',
    ],
    ids=["emotive_out_of_range", "vector_out_of_range", "lone_surrogate", "invalid_utf8"],
)
def test_bodies_msgspec_cannot_decode_are_invalid_json(kato: httpx.Client, content: bytes) -> None:
    response = kato.post("/observe", content=content, headers={"content-type": "application/json"})
    assert_error(response, 422, "INVALID_JSON")
    assert kato.get("/status").json()["time"] == 0


def test_bodies_of_learn_clear_and_predictions_are_ignored(kato: httpx.Client) -> None:
    def garbage(path: str) -> dict[str, Any]:
        response = kato.post(
            path, content=b"not json", headers={"content-type": "application/json"}
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    observe(kato, "a", "b")
    assert garbage("/learn")["pattern_name"].startswith("PTRN|")
    observe(kato, "a", "b")
    assert len(garbage("/predictions")["predictions"]) == 1
    assert garbage("/clear-stm")["message"] == "stm-cleared"
    assert garbage("/clear-all")["message"] == "all-cleared"


def test_body_limit_is_configurable() -> None:
    with start_processor(MAX_BODY_BYTES="100") as small, httpx.Client(base_url=small.url) as client:
        assert_error(client.post("/observe", json={"strings": ["x" * 200]}), 413, "BODY_TOO_LARGE")
        assert client.post("/observe", json={"strings": ["x"]}).status_code == 200


def test_openapi_schema_is_served(kato: httpx.Client) -> None:
    schema = kato.get("/schema/openapi.json").json()
    assert "/observe" in schema["paths"]
    assert "/state" in schema["paths"]


def test_openapi_documents_the_error_answers_each_route_gives(kato: httpx.Client) -> None:
    schema = kato.get("/schema/openapi.json").json()

    def errors(path: str, method: str) -> dict[str, str]:
        responses = schema["paths"][path][method]["responses"]
        return {
            status: response["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
            for status, response in responses.items()
            if status != "200"
        }

    assert errors("/observe", "post") == {
        "413": "ErrorResponse",
        "422": "ErrorResponse",
        "503": "ErrorResponse",
    }
    # Input errors are 422 here; the only 400 is the spec's rejected gene update.
    assert errors("/genes/update", "post") == {
        "400": "ErrorResponse",
        "413": "ErrorResponse",
        "422": "ErrorResponse",
    }
    assert errors("/gene/{gene_name}", "get") == {"404": "ErrorResponse"}
    assert errors("/stm", "get") == {}
    error = schema["components"]["schemas"]["ErrorResponse"]
    assert set(error["required"]) == {"error", "status"}


def test_genes_start_from_the_environment() -> None:
    with (
        start_processor(
            MAX_PATTERN_LENGTH="2", RECALL_THRESHOLD="0.4", PROCESSOR_NAME="Named"
        ) as p,
        httpx.Client(base_url=p.url) as c,
    ):
        assert c.get("/gene/max_pattern_length").json()["gene_value"] == 2
        assert c.get("/gene/recall_threshold").json()["gene_value"] == 0.4
        assert c.get("/status").json()["processor_name"] == "Named"
