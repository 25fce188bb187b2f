"""Which requests the proxy front serves before Litestar's router, and which it passes on."""

from __future__ import annotations

from typing import Any

import pytest

from session_manager.api.proxy_front import SessionProxyFront
from session_manager.app import create_app
from session_manager.settings import Settings


@pytest.fixture(name="front", scope="module")
def fx_front() -> SessionProxyFront:
    app = create_app(Settings.from_env({}))
    assert isinstance(app.asgi_handler, SessionProxyFront)  # create_app installs it
    return app.asgi_handler


def _scope(path: str, method: str = "POST", kind: str = "http") -> dict[str, Any]:
    return {"type": kind, "method": method, "path": path, "headers": []}


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/session/abc/observe", "POST"),
        ("/session/abc/predictions", "GET"),
        ("/session/abc/genes/update", "POST"),
        ("/session/abc/pattern/PTRN%7Cx", "GET"),
        ("/session/abc/state", "HEAD"),
        ("/session/abc/clear-all", "OPTIONS"),
    ],
)
def test_proxied_paths_are_served_by_the_front(
    front: SessionProxyFront, path: str, method: str
) -> None:
    assert front._session_id(_scope(path, method)) == "abc"


@pytest.mark.parametrize(
    ("path", "method", "kind"),
    [
        ("/session/abc", "GET", "http"),  # the session itself
        ("/session/abc/", "GET", "http"),
        ("/session/abc/keepalive", "POST", "http"),  # the manager's own routes
        ("/session/abc/keepalive/x", "POST", "http"),
        ("/session/abc/token", "POST", "http"),
        ("/session/abc/ws", "GET", "websocket"),
        ("/session/abc/ws", "GET", "http"),
        ("/session/create", "POST", "http"),
        ("/session/create/x", "POST", "http"),
        ("/session/abc/observe", "TRACE", "http"),  # Litestar answers 405
        ("/sessions/abc/observe", "POST", "http"),
        ("/admin/sessions", "GET", "http"),
    ],
)
def test_everything_else_goes_to_litestar(
    front: SessionProxyFront, path: str, method: str, kind: str
) -> None:
    assert front._session_id(_scope(path, method, kind)) is None
