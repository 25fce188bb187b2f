"""``WS /ws`` without a processor: closed with 1011 before it is accepted (spec §7.3)."""

import pytest
from litestar import Litestar
from litestar.exceptions import WebSocketDisconnect
from litestar.testing import TestClient

from processor_image.service.ws import ws


def test_a_socket_without_a_processor_is_closed_with_1011_before_accept() -> None:
    with (
        TestClient(Litestar([ws])) as client,
        pytest.raises(WebSocketDisconnect) as closed,
        client.websocket_connect("/ws"),
    ):
        pass
    assert closed.value.code == 1011
    assert closed.value.detail == "Processor not initialized"
