"""Guards: the admin token for ``/admin``; session tokens are checked by ``Sessions``."""

from __future__ import annotations

import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from session_manager.errors import Unauthorized

__all__ = ("require_admin",)


def require_admin(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Allow only ``Authorization: Bearer <ADMIN_TOKEN>`` (compared in constant time)."""
    expected: str = connection.app.state.settings.admin_token
    scheme, _sep, token = (connection.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing admin token (Authorization: Bearer <ADMIN_TOKEN>)")
    if not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise Unauthorized("wrong admin token")
