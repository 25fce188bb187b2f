"""The one exception handler: every failure leaves as the error JSON, internals never shown."""

from __future__ import annotations

import msgspec
import pytest
from litestar import Litestar, get, post
from litestar.params import JSONBody
from litestar.testing import TestClient

from session_manager.api.errors import EXCEPTION_HANDLERS
from session_manager.errors import CapacityExceeded, SessionExpired


class Body(msgspec.Struct, forbid_unknown_fields=True):
    n: int


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


@pytest.fixture(name="client")
def fx_client() -> TestClient[Litestar]:
    app = Litestar([boom, full, gone, typed], exception_handlers=EXCEPTION_HANDLERS)
    return TestClient(app)


def test_an_unexpected_error_is_a_500_without_internals(client: TestClient[Litestar]) -> None:
    with client:
        reply = client.get("/boom")
    assert reply.status_code == 500
    assert reply.json() == {
        "error": {"code": "INTERNAL", "message": "internal error", "details": {}},
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
        ("POST", "/typed", b'{"n": "x"}', 400, "VALIDATION_FAILED"),
        ("POST", "/typed", b"{not json", 400, "VALIDATION_FAILED"),
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
