"""``POST /admin/reap``: one reaper pass now, on whichever instance gets the request."""

from __future__ import annotations

from typing import Any

from litestar import Request, post

from session_manager.api.auth import require_admin
from session_manager.api.errors import documented
from session_manager.errors import StoreUnavailable, Unauthorized
from session_manager.reaper import Reaper, ReapReport

__all__ = ("REAP_HANDLERS",)


@post(
    "/admin/reap",
    guards=[require_admin],
    status_code=200,
    tags=["admin"],
    responses=documented(Unauthorized, StoreUnavailable),
)
async def reap_now(request: Request[Any, Any, Any]) -> ReapReport:
    """Run a pass and say what it did (hibernated, ended by reason, skipped, failed)."""
    reaper: Reaper = request.app.state.reaper
    return await reaper.reap_once()


REAP_HANDLERS = (reap_now,)
