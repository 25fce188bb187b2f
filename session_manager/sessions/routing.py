"""Where a request for a session id goes: static routes first, then the session's processor.

``RouteCache`` keeps the routes of ``ready`` sessions in memory, but only while the store's
change feed is subscribed: every status change (on any replica) drops the session's route,
and a broken feed drops them all and turns the cache off until it is back. ``Router.resolve``
answers from the cache, else from one Redis read, else waits out a start and restores a
hibernated session. The wait ends with the session's next status change (``wait_for_change``:
this replica's own transitions and the change feed wake it), polling only as a fallback.

Gateway mode's registered processors (``StaticRoutes``) are given to the ``Router`` when it is
built; they are checked before any session and never reach Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import msgspec

from session_manager.errors import KatoError, SessionNotReady, StoreUnavailable
from session_manager.models import SessionRecord, SessionStatus
from session_manager.sessions.records import gone, live_record
from session_manager.sessions.tokens import SessionTokens
from session_manager.store import SessionStore
from session_manager.store.records import Route

__all__ = ("ProcessorRoute", "RouteCache", "Router", "StaticRoutes")

log = logging.getLogger(__name__)

_ROUTE_TTL_S = 5.0
"""Bounds how stale a cached route can be if a change message were ever missed."""
_ROUTES_MAX = 100_000
_POLL_S = 0.05
"""How long a waiter sleeps between reads while the change feed is off."""
_FEED_WAIT_S = 0.5
"""The same while the feed is on: a change wakes it first; this bounds a missed message."""
_RESUBSCRIBE_S = 1.0


class ProcessorRoute(msgspec.Struct, frozen=True):
    """Where the proxy sends a session's requests, and the session's epoch it was read at.

    The epoch picks the secret the processor is sent and is checked by the journal, so a
    route gone stale (the session restarted elsewhere since) gets no write acknowledged.
    """

    session_id: str
    endpoint: str
    epoch: int = 0


class StaticRoutes(Protocol):
    """Processors registered from configuration (gateway mode), reached by processor id."""

    def __contains__(self, processor_id: object) -> bool:
        """Whether the id is a registered processor."""
        ...

    def endpoint_for(self, processor_id: str) -> str | None:
        """The URL of a registered, healthy processor; ``None`` when the id is not registered.

        Raises ``ProcessorUnhealthy`` (503) for a registered processor that failed its check.
        """
        ...


class _CachedRoute(msgspec.Struct, frozen=True):
    endpoint: str
    token_hash: str
    at: float
    epoch: int


class RouteCache:
    """Routes of ``ready`` sessions, trusted only while the change feed is subscribed."""

    def __init__(self, store: SessionStore) -> None:
        self._store = store
        self._routes: dict[str, _CachedRoute] = {}
        self._live = False
        self._epoch = 0
        self._watcher: asyncio.Task[None] | None = None
        self._waiters: dict[str, asyncio.Event] = {}

    def start_watching(self) -> None:
        """Follow every replica's status changes, so routes may be served from memory."""
        self._watcher = asyncio.create_task(self._watch_changes())

    async def aclose(self) -> None:
        """Stop following the change feed."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher

    async def _watch_changes(self) -> None:
        """Drop a session's route whenever its status changes; all of them if the feed breaks."""
        while True:
            try:
                async for session_id in self._store.changes():
                    self.forget(session_id)
                    if not session_id:
                        self._live = True
            except StoreUnavailable:
                log.warning("change feed lost; route cache off until Redis is back")
            except Exception:
                log.exception("change feed failed; route cache off")
            finally:
                self._live = False
                self.forget("")
            await asyncio.sleep(_RESUBSCRIBE_S)

    def forget(self, session_id: str) -> None:
        """Drop one cached route (all of them for ``""``); fills racing this are discarded."""
        self._epoch += 1
        if session_id:
            self._routes.pop(session_id, None)
            waiting = self._waiters.pop(session_id, None)
            if waiting is not None:
                waiting.set()
        else:
            self._routes.clear()
            for waiting in self._waiters.values():
                waiting.set()
            self._waiters.clear()

    async def wait_for_change(self, session_id: str, epoch: int) -> None:
        """Return once the session's status may have changed since ``epoch`` was read.

        At once if anything changed since (the caller reads again); else at the session's next
        change, or after a bounded pause (``_POLL_S`` while the feed is off, when another
        replica's changes go unseen).
        """
        if epoch != self._epoch:
            return
        waiting = self._waiters.setdefault(session_id, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_FEED_WAIT_S if self._live else _POLL_S):
                await waiting.wait()

    @property
    def epoch(self) -> int:
        """Changes seen so far; read it before a Redis read and hand it to ``remember``."""
        return self._epoch

    def get(self, session_id: str) -> _CachedRoute | None:
        """A route cached less than ``_ROUTE_TTL_S`` ago."""
        cached = self._routes.get(session_id)
        if cached is None or time.monotonic() - cached.at >= _ROUTE_TTL_S:
            return None
        return cached

    def remember(self, session_id: str, route: Route, epoch: int) -> None:
        """Cache a route read at ``epoch``, unless a change arrived since or the feed is off.

        ``epoch`` is this cache's change counter; the session's own epoch is ``route.epoch``.
        """
        if not self._live or epoch != self._epoch:
            return
        if len(self._routes) >= _ROUTES_MAX:
            self._routes.clear()
        self._routes[session_id] = _CachedRoute(
            route.endpoint, route.token_hash, time.monotonic(), route.epoch
        )


Restore = Callable[[SessionRecord], Awaitable[SessionRecord | None]]
"""Start a hibernated session's processor: the ready record, or ``None`` if another task is."""


class Router:
    """``resolve``: a session id (and its token) to the processor that serves it."""

    def __init__(
        self,
        *,
        store: SessionStore,
        cache: RouteCache,
        tokens: SessionTokens,
        restore: Restore,
        settle_timeout_s: float,
        static: StaticRoutes | None = None,
    ) -> None:
        self._store = store
        self._cache = cache
        self._tokens = tokens
        self._restore = restore
        self._settle_timeout_s = settle_timeout_s
        self._static = static

    def is_static(self, session_id: str) -> bool:
        """Whether the id names a registered processor (gateway mode) rather than a session."""
        return self._static is not None and session_id in self._static

    async def resolve(self, session_id: str, authorization: str | None) -> ProcessorRoute:
        """Where to send this request; waits out starts and restores a hibernated session.

        Raises ``SessionNotFound``, ``SessionExpired``, ``Unauthorized``, ``StoreUnavailable``,
        or ``SessionNotReady`` (503, ``Retry-After``) when the session is still starting or being
        recovered once the settle timeout (start plus stop timeout) has passed.
        """
        if self._static is not None:
            endpoint = self._static.endpoint_for(session_id)
            if endpoint is not None:
                return ProcessorRoute(session_id=session_id, endpoint=endpoint)
        remembered = self._remembered(session_id, authorization)
        if remembered is not None:
            return remembered
        epoch = self._cache.epoch
        route = await self._store.route(session_id)
        if route is None:
            raise gone(session_id, await self._store.tombstone(session_id))
        self._tokens.check(route.token_hash, authorization)
        if route.status == SessionStatus.READY:
            self._cache.remember(session_id, route, epoch)
            return ProcessorRoute(session_id, route.endpoint, route.epoch)
        return await self._settle(session_id)

    def cached(self, session_id: str, authorization: str | None) -> ProcessorRoute | None:
        """The route ``resolve`` would give from memory alone, else ``None`` (never raises).

        For the proxy's lane (``api.proxy_lane``): a session that is static, not cached, or
        whose token does not check out is left to ``resolve`` and its errors.
        """
        if self.is_static(session_id):
            return None
        try:
            return self._remembered(session_id, authorization)
        except KatoError:
            return None

    def _remembered(self, session_id: str, authorization: str | None) -> ProcessorRoute | None:
        """The cached route, its token checked (``Unauthorized``); ``None`` when not cached."""
        cached = self._cache.get(session_id)
        if cached is None:
            return None
        self._tokens.check(cached.token_hash, authorization)
        return ProcessorRoute(session_id, cached.endpoint, cached.epoch)

    def forget(self, session_id: str) -> None:
        """Drop the session's cached route: the proxy found its processor moving."""
        self._cache.forget(session_id)

    async def moved(self, session_id: str, endpoint: str) -> bool:
        """Whether the session is no longer ``ready`` at ``endpoint`` (one Redis read).

        For the proxy, when ``endpoint`` refused or dropped a connection: a session that is
        hibernating, restoring or recovering is worth resolving again; a static processor or
        a ``ready`` session at that endpoint is not (its processor is just unreachable).
        """
        route = await self._store.route(session_id)
        if route is None:
            return False
        return route.status != SessionStatus.READY or route.endpoint != endpoint

    async def _settle(self, session_id: str) -> ProcessorRoute:
        """The route once the session is ``ready``: wait out a start, restore a hibernation."""
        epoch = self._cache.epoch
        record = await live_record(self._store, session_id)
        deadline = time.monotonic() + self._settle_timeout_s
        while True:
            if record.status == SessionStatus.READY:
                return ProcessorRoute(session_id, record.endpoint, record.epoch)
            if record.status == SessionStatus.HIBERNATED:
                restored = await self._restore(record)
                if restored is not None:
                    return ProcessorRoute(session_id, restored.endpoint, restored.epoch)
                # Another task started it: its start gets the whole timeout, however long
                # this request waited in line for a start slot.
                deadline = time.monotonic() + self._settle_timeout_s
            elif time.monotonic() >= deadline:
                raise SessionNotReady(
                    f"the session is still {record.status}: retry shortly", session_id=session_id
                )
            else:
                await self._cache.wait_for_change(session_id, epoch)
            epoch = self._cache.epoch
            record = await live_record(self._store, session_id)
