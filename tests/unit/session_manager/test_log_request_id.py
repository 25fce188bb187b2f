"""``request_id_from``: the one rule for a request's id, used by the middleware and the proxy."""

from __future__ import annotations

from typing import cast

import pytest
from litestar.types import Message, Receive, Scope, Send

from session_manager import log as log_context
from session_manager.log import request_id_from


def test_request_id_from_the_client_is_kept() -> None:
    assert request_id_from([(b"x-request-id", b"abc-123:x.y_z")]) == "abc-123:x.y_z"


@pytest.mark.parametrize("value", [b"", b"has space", b"x" * 129, b"new\nline"])
def test_request_id_that_is_not_a_plain_token_is_replaced(value: bytes) -> None:
    generated = request_id_from([(b"x-request-id", value)])
    assert generated != value.decode()
    assert len(generated) == 32


def test_request_id_is_generated_when_missing() -> None:
    assert request_id_from([]) != request_id_from([])


def test_request_id_of_the_logging_context_wins() -> None:
    token = log_context.request_id.set("from-the-middleware")
    try:
        assert request_id_from([(b"x-request-id", b"other")]) == "from-the-middleware"
    finally:
        log_context.request_id.reset(token)


@pytest.mark.parametrize("scope_type", ["http", "websocket"])
@pytest.mark.parametrize(("given", "kept"), [(b"trace-7", True), (b"a b{}", False), (None, False)])
async def test_middleware_and_proxy_agree_on_the_id_for_http_and_websocket(
    scope_type: str, given: bytes | None, kept: bool
) -> None:
    headers = [] if given is None else [(b"x-request-id", given)]
    seen: dict[str, str | None] = {}
    sent: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen["context"] = log_context.request_id.get()
        seen["proxy"] = request_id_from(scope["headers"])
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})

    async def receive() -> Message:
        raise AssertionError("not read")

    async def send(message: Message) -> None:
        sent.append(message)

    scope = cast("Scope", {"type": scope_type, "path": "/session/s1/ws", "headers": headers})
    await log_context.RequestContext(app)(scope, receive, send)

    assert seen["context"] == seen["proxy"]
    rid = seen["proxy"]
    assert rid is not None
    if kept:
        assert rid == "trace-7"
    else:
        assert len(rid) == 32
    if scope_type == "http":
        assert (b"x-request-id", rid.encode()) in sent[0]["headers"]
    assert log_context.request_id.get() is None
