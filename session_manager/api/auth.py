"""Guards: the admin token for ``/admin``; session tokens are checked by ``Sessions``.

Both read the bearer token and compare it the same way (``sessions.tokens``).
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from session_manager.errors import Unauthorized
from session_manager.sessions.tokens import bearer_token, same_secret

__all__ = ("require_admin",)


def require_admin(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Allow only ``Authorization: Bearer <ADMIN_TOKEN>`` (compared in constant time)."""
    expected: str = connection.app.state.settings.admin_token
    token = bearer_token(connection.headers.get("authorization"))
    if token is None:
        raise Unauthorized("missing admin token (Authorization: Bearer <ADMIN_TOKEN>)")
    if not same_secret(token, expected):
        raise Unauthorized("wrong admin token")
