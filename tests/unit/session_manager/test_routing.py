"""The router gets gateway mode's static routes when it is built and checks them first."""

from __future__ import annotations

from typing import Any, cast

import pytest

from session_manager.clock import SystemClock
from session_manager.errors import ProcessorUnhealthy
from session_manager.metrics import Metrics
from session_manager.models import SessionRecord
from session_manager.sessions import Sessions
from session_manager.sessions.routing import ProcessorRoute, RouteCache, Router
from session_manager.sessions.tokens import SessionTokens
from session_manager.settings import Settings
from session_manager.store import SessionStore


class Registered:
    """Static routes: ``alpha`` is healthy, ``beta`` registered but failing its checks."""

    def __contains__(self, processor_id: object) -> bool:
        return processor_id in ("alpha", "beta")

    def endpoint_for(self, processor_id: str) -> str | None:
        if processor_id == "beta":
            raise ProcessorUnhealthy("processor 'beta' is unhealthy", processor_id="beta")
        return "http://alpha:8000" if processor_id == "alpha" else None


class NoStore:
    """A store that must not be reached: static ids never touch Redis."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the store was asked for {name}")


async def _never_restore(record: SessionRecord) -> SessionRecord | None:
    raise AssertionError("nothing to restore")


def _router() -> Router:
    store = cast(SessionStore, NoStore())
    return Router(
        store=store,
        cache=RouteCache(store),
        tokens=SessionTokens("token"),
        restore=_never_restore,
        settle_timeout_s=1.0,
        static=Registered(),
    )


async def test_a_static_id_routes_to_its_processor_without_a_token_or_redis() -> None:
    router = _router()
    assert await router.resolve("alpha", None) == ProcessorRoute("alpha", "http://alpha:8000")
    assert router.is_static("alpha")
    assert not router.is_static("a-session-id")


async def test_an_unhealthy_static_processor_is_refused_at_once() -> None:
    with pytest.raises(ProcessorUnhealthy):
        await _router().resolve("beta", None)


async def test_other_ids_fall_through_to_the_session_routes() -> None:
    with pytest.raises(AssertionError, match="the store was asked for route"):
        await _router().resolve("a-session-id", "Bearer t")


async def test_sessions_take_static_routes_at_construction_and_never_touch_them() -> None:
    settings = Settings.from_env({"ADMIN_TOKEN": "x" * 16, "DATA_DIR": "/nonexistent"})
    sessions = Sessions(
        settings=settings,
        store=cast(SessionStore, NoStore()),
        backend=cast(Any, None),
        metrics=Metrics(),
        clock=SystemClock(),
        static=Registered(),
    )
    try:
        assert (await sessions.resolve("alpha", None)).endpoint == "http://alpha:8000"
        await sessions.touch("alpha")  # no deadline to move: the store is not asked
        with pytest.raises(AssertionError, match="the store was asked for touch"):
            await sessions.touch("a-session-id")  # a session: a plain store touch, every time
    finally:
        await sessions.aclose()
