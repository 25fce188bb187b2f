"""The one exception handler: every failure leaves as the error JSON, internals never shown."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from litestar import Litestar, get, post
from litestar.params import JSONBody
from litestar.testing import TestClient

from processor_image.service.app import create_app as create_processor_app
from processor_image.service.config import ServiceConfig
from session_manager.api.errors import EXCEPTION_HANDLERS
from session_manager.api.schemas import checked_genes
from session_manager.errors import CapacityExceeded, SessionExpired


class Body(msgspec.Struct, forbid_unknown_fields=True):
    n: int


class GenesBody(msgspec.Struct):
    genes: dict[str, Any]


@get("/boom")
async def boom() -> None:
    raise RuntimeError("secret internals")


@get("/full")
async def full() -> None:
    raise CapacityExceeded("capacity exhausted", retry_after_s=7, limit="MAX_SESSIONS")


@get("/gone")
async def gone() -> None:
    raise SessionExpired("the session ended (idle)", reason="idle")


@post("/typed")
async def typed(data: JSONBody[Body]) -> int:
    return data.n


@post("/big", request_max_body_size=64)
async def big(data: JSONBody[Body]) -> int:
    return data.n


@pytest.fixture(name="client")
def fx_client() -> TestClient[Litestar]:
    app = Litestar([boom, full, gone, typed, big], exception_handlers=EXCEPTION_HANDLERS)
    return TestClient(app)


def test_an_unexpected_error_is_a_500_without_internals(client: TestClient[Litestar]) -> None:
    with client:
        reply = client.get("/boom")
    assert reply.status_code == 500
    assert reply.json() == {
        "error": {
            "code": "INTERNAL_ERROR",
            "message": "An unexpected error occurred",
            "details": {},
        },
        "status": 500,
    }


def test_kato_errors_keep_status_code_details_and_headers(client: TestClient[Litestar]) -> None:
    with client:
        full_reply = client.get("/full")
        gone_reply = client.get("/gone")
    assert full_reply.status_code == 429
    assert full_reply.headers["Retry-After"] == "7"
    assert full_reply.json()["error"]["details"] == {"retry_after_s": 7, "limit": "MAX_SESSIONS"}
    assert gone_reply.status_code == 410
    assert gone_reply.json()["error"]["code"] == "SESSION_EXPIRED"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "/typed", b'{"n": "x"}', 422, "VALIDATION_ERROR"),
        ("POST", "/typed", b"{not json", 422, "INVALID_JSON"),
        ("POST", "/typed", b'{"n": "\xff\xfe"}', 422, "INVALID_JSON"),
        ("POST", "/big", b"x" * 65, 413, "BODY_TOO_LARGE"),
        ("GET", "/nowhere", None, 404, "NOT_FOUND"),
        ("DELETE", "/boom", None, 405, "METHOD_NOT_ALLOWED"),
    ],
)
def test_framework_errors_use_the_same_shape(
    client: TestClient[Litestar],
    method: str,
    path: str,
    body: bytes | None,
    status: int,
    code: str,
) -> None:
    with client:
        reply = client.request(
            method, path, content=body, headers={"content-type": "application/json"}
        )
    assert reply.status_code == status
    assert reply.json()["status"] == status
    assert reply.json()["error"]["code"] == code
    assert set(reply.json()["error"]) == {"code", "message", "details"}


# -- one vocabulary: the same failure gets the same status and code from both services --------


@post("/genes/update", request_max_body_size=64)
async def manager_genes(data: JSONBody[GenesBody]) -> None:
    checked_genes(data.genes)


@pytest.fixture(name="processor_client")
def fx_processor_client() -> Iterator[TestClient[Litestar]]:
    app = create_processor_app(ServiceConfig(processor_id="p1", max_body_bytes=64))
    with TestClient(app) as client:
        yield client


@pytest.fixture(name="manager_client")
def fx_manager_client() -> Iterator[TestClient[Litestar]]:
    app = Litestar([manager_genes], exception_handlers=EXCEPTION_HANDLERS)
    with TestClient(app) as client:
        yield client


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "/genes/update", b"{nope", 422, "INVALID_JSON"),
        ("POST", "/genes/update", b'{"genes": "\xff\xfe"}', 422, "INVALID_JSON"),
        ("POST", "/genes/update", b'{"genes": 5}', 422, "VALIDATION_ERROR"),
        ("POST", "/genes/update", b"{}", 422, "VALIDATION_ERROR"),
        ("POST", "/genes/update", b'{"genes": {"bogus": 1}}', 400, "HTTP_400"),
        ("POST", "/genes/update", b'{"genes": {"recall_threshold": 7}}', 400, "INVALID_GENE_VALUE"),
        ("POST", "/genes/update", b'{"genes": {"persistence": -1}}', 400, "INVALID_GENE_VALUE"),
        ("POST", "/genes/update", b'{"genes": {"sort": 1}}', 400, "INVALID_GENE_VALUE"),
        ("POST", "/genes/update", b'{"genes": {"x": "' + b"y" * 80 + b'"}}', 413, "BODY_TOO_LARGE"),
        ("GET", "/genes/update", None, 405, "METHOD_NOT_ALLOWED"),
        ("GET", "/nowhere", None, 404, "NOT_FOUND"),
    ],
    ids=[
        "malformed_json",
        "invalid_utf8",
        "wrong_type",
        "missing_field",
        "unknown_gene",
        "gene_out_of_range",
        "gene_below_range",
        "gene_of_wrong_type",
        "oversized_body",
        "wrong_method",
        "unknown_route",
    ],
)
def test_both_services_answer_the_same_failure_alike(
    processor_client: TestClient[Litestar],
    manager_client: TestClient[Litestar],
    method: str,
    path: str,
    body: bytes | None,
    status: int,
    code: str,
) -> None:
    answers = []
    for client in (processor_client, manager_client):
        reply = client.request(
            method, path, content=body, headers={"content-type": "application/json"}
        )
        answers.append((reply.status_code, reply.json()["status"], reply.json()["error"]["code"]))
        assert reply.json()["error"]["message"]
    assert answers == [(status, status, code)] * 2


def test_both_services_refuse_a_gene_with_the_same_message(
    processor_client: TestClient[Litestar], manager_client: TestClient[Litestar]
) -> None:
    body = {"genes": {"max_predictions": -3}}
    messages = {
        client.post("/genes/update", json=body).json()["error"]["message"]
        for client in (processor_client, manager_client)
    }
    assert messages == {"Invalid value for gene max_predictions: expected an integer >= 0, got -3"}
