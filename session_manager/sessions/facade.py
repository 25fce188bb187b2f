"""``Sessions``: the one object the API, the reaper and the reconciler hold; it only delegates.

It wires the parts together (route cache, router, lifecycle, hibernation, tokens) and adds the
token checks of the session API. Each part's module says what it does.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from session_manager.backends.base import Backend
from session_manager.clock import Clock
from session_manager.errors import (
    ProcessorTimeout,
    ProcessorUnavailable,
    SessionConflict,
    SessionNotFound,
    Unauthorized,
)
from session_manager.metrics import Metrics
from session_manager.models import EndReason, SessionRecord, SessionStatus
from session_manager.processor_client import ProcessorClient
from session_manager.processor_secrets import ProcessorSecrets
from session_manager.sessions.crash_watch import CrashWatch
from session_manager.sessions.hibernation import Hibernation
from session_manager.sessions.lifecycle import Lifecycle
from session_manager.sessions.records import live_record, record_with_deadlines
from session_manager.sessions.routing import RouteCache, Router, StaticRoutes
from session_manager.sessions.tokens import SessionTokens, new_token
from session_manager.settings import Settings
from session_manager.store import SessionStore

__all__ = ("Sessions",)

log = logging.getLogger(__name__)


class Sessions:
    """Creates, resolves, keeps alive, hibernates, restores and ends sessions.

    ``create``/``end`` are ``Lifecycle``'s, ``resolve`` is ``Router``'s, ``hibernate``/
    ``restore``/``recover``/``recover_lost``/``checkpoint`` are ``Hibernation``'s; the rest
    are the session API's token checks.

    ``static`` (gateway mode) names processors that are reached by id and never stored as
    sessions. ``processors`` is the client for calls to processors; when not given, one is
    made from the settings and closed by ``aclose``.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        store: SessionStore,
        backend: Backend,
        metrics: Metrics,
        clock: Clock,
        static: StaticRoutes | None = None,
        processors: ProcessorClient | None = None,
    ) -> None:
        self.store = store
        self._owns_processors = processors is None
        self._processors = processors or ProcessorClient(
            read_timeout_s=settings.proxy_read_timeout_s,
            connect_timeout_s=settings.proxy_connect_timeout_s,
            secrets=ProcessorSecrets.from_key(settings.processor_secret_key),
        )
        self._tokens = SessionTokens(settings.session_auth)
        self._cache = RouteCache(store)
        self._lifecycle = Lifecycle(
            settings=settings,
            store=store,
            backend=backend,
            metrics=metrics,
            clock=clock,
            tokens=self._tokens,
            forget=self._cache.forget,
        )
        self._hibernation = Hibernation(self._lifecycle, self._processors)
        self._crashes = CrashWatch(
            backend, self._hibernation.recover_lost, wait_s=settings.start_timeout_s
        )
        self._router = Router(
            store=store,
            cache=self._cache,
            tokens=self._tokens,
            restore=self._hibernation.restore,
            settle_timeout_s=settings.start_timeout_s + settings.stop_timeout_s,
            static=static,
        )
        # The parts' own methods: each signature and docstring is written once, there.
        self.create = self._lifecycle.create
        self.end = self._lifecycle.end
        self.abandon_start = self._lifecycle.abandon_start
        self.wait_for_starts = self._lifecycle.wait_for_starts
        self.resolve = self._router.resolve
        self.cached_route = self._router.cached
        self.forget_route = self._router.forget
        self.moved = self._router.moved
        self.hibernate = self._hibernation.hibernate
        self.abandon_hibernation = self._hibernation.abandon_hibernation
        self.restore = self._hibernation.restore
        self.recover = self._hibernation.recover
        self.recover_lost = self._hibernation.recover_lost
        self.check_out_of_memory = self._hibernation.check_out_of_memory
        self.recoverable = self._hibernation.recoverable
        self.exit_event = self._hibernation.exits.event
        self.note_exit = self._hibernation.exits.noted
        self.checkpoint = self._hibernation.checkpoint
        self.is_static = self._router.is_static

    def checkpoint_after_replay(self, checkpoint: Callable[[str], None]) -> None:
        """Have ``checkpoint(session_id)`` called once a restart replayed journal entries."""
        self._hibernation.on_replayed = checkpoint

    def settle_before_replay(self, settle: Callable[[str], Awaitable[None]]) -> None:
        """Have ``settle(session_id)`` awaited before a restart reads the session's journal."""
        self._hibernation.before_replay = settle

    def start_watching(self) -> None:
        """Follow every replica's status changes, so ``resolve`` may serve routes from memory."""
        self._cache.start_watching()

    async def aclose(self) -> None:
        """Let starts in flight finish (bounded by the start timeout); processors keep running."""
        await self._cache.aclose()
        await self._crashes.aclose()
        await self._lifecycle.aclose()
        if self._owns_processors:
            await self._processors.aclose()

    @property
    def starts_in_flight(self) -> int:
        """Starts running in the background on this replica."""
        return self._lifecycle.starts_in_flight

    # -- the session API --------------------------------------------------------------------

    async def get(self, session_id: str, authorization: str | None) -> SessionRecord:
        """The session's record (with deadlines) for its token holder."""
        record = await self.inspect(session_id)
        self._tokens.check(record.token_hash, authorization)
        return record

    async def inspect(self, session_id: str) -> SessionRecord:
        """The record with its deadlines, without a token check (admin); 404 or 410."""
        return await record_with_deadlines(self.store, session_id)

    async def live_genes(
        self, record: SessionRecord, names: Iterable[str]
    ) -> dict[str, Any] | None:
        """The named genes' values in the running processor; ``None`` unless it is ``ready``.

        A processor that cannot answer right now gives ``None`` too: the record is still worth
        showing.
        """
        if record.status != SessionStatus.READY or not record.endpoint:
            return None
        try:
            return await self._processors.genes(
                record.endpoint, names, processor_id=record.processor_id, epoch=record.epoch
            )
        except (ProcessorUnavailable, ProcessorTimeout) as exc:
            log.info(
                "live genes unavailable",
                extra={"session_id": record.session_id, "error": exc.message},
            )
            return None

    async def keepalive(self, session_id: str, authorization: str | None) -> SessionRecord:
        """Push the idle deadline to now + the session's idle timeout; the updated record."""
        await self.get(session_id, authorization)
        await self.store.touch(session_id)
        return await self.inspect(session_id)

    async def touch(self, session_id: str) -> None:
        """Note activity: move the idle deadline. The proxy's activity tracker throttles calls.

        Static processors (gateway mode) are never reaped, so they have no deadline to move.
        """
        if self._router.is_static(session_id):
            return
        await self.store.touch(session_id)

    async def delete(self, session_id: str, authorization: str | None) -> None:
        """The token holder ends the session (reason ``deleted``)."""
        record = await live_record(self.store, session_id)
        self._tokens.check(record.token_hash, authorization)
        await self.end(session_id, EndReason.DELETED)

    async def rotate_token(
        self, session_id: str, authorization: str | None, *, tenant: str | None = None
    ) -> str:
        """A new token for the token holder or the session's ``tenant``; the old one is void.

        ``tenant``: the caller presented that tenant's API key instead of the token; another
        tenant's session is then a 404, as if it did not exist.

        The swap is a compare-and-set on the token hash that publishes on the change feed, so
        every replica drops the route it cached with the old hash; of two rotations racing
        with the same token only one wins (the other gets 401).
        """
        if not self._tokens.required:
            raise SessionConflict("SESSION_AUTH=none: sessions have no token to rotate")
        record = await live_record(self.store, session_id)
        if tenant is None:
            self._tokens.check(record.token_hash, authorization)
        elif record.tenant != tenant:
            raise SessionNotFound("no such session", session_id=session_id)
        token, token_hash = new_token()
        swapped = await self.store.rotate_token(session_id, record.token_hash, token_hash)
        self._cache.forget(session_id)
        if not swapped:
            await live_record(self.store, session_id)  # ended meanwhile: 404/410
            raise Unauthorized("the session token was rotated meanwhile")
        log.info("session token rotated", extra={"session_id": session_id})
        return token
