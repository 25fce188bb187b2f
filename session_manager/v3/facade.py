"""``V3Sessions``: v3 sessions on top of ``Sessions``, and their calls to private processors.

A v3 session is created through ``Sessions.create`` like ``POST /session/create`` (limits,
warm pool, admin listing, reaping, hibernation, metrics), with v3's id as its session id, its
node's knowledge base as ``kb_id`` and ``user_id`` ``v3-node-<node key>``. Its v3 fields live in
``store.v3``. Its token is never shown: it is derived from the deployment's processor key and
the session id, so any replica can present it to ``Sessions.resolve`` and nothing is stored.
Every processor call goes through ``proxy_request``, the proxy's own path: journaled, following
the session across hibernation and recovery, moving its idle deadline.

Time: the v3 TTL is the session's idle timeout (the reaper frees its processor then) and its
v3 deadline (``v3:deadline``), which every session route but ``exists`` moves to now + TTL and
``extend`` sets. Past it the session is gone for v3 (404) and is ended (reason ``idle``), by the
first request that notices or by ``sweep``.

Knowledge: sessions of one node share ``kb_id``. On MongoDB each learn or clear through this API
counts a node generation (``store.v3``); a session whose processor has not seen the latest one
re-reads the store (``POST /knowledge/reload``) before its next observe, learn or prediction.
With memory stores each processor records its knowledge changes; after a learn or clear they
are drained into the node's log, and before its next observe, learn or prediction a processor
applies the entries it lacks (``POST /knowledge/sync``, ``processor_image.engine.sharing``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from typing import TYPE_CHECKING, Any

import msgspec

from session_manager.errors import (
    ProcessorUnavailable,
    SessionExpired,
    SessionNotFound,
)
from session_manager.models import EndReason, Tenant
from session_manager.sessions import NewSession
from session_manager.sessions.specs import SHARED_KNOWLEDGE
from session_manager.sessions.tokens import hash_token
from session_manager.store.v3 import V3Record
from session_manager.v3 import config as v3config
from session_manager.v3.errors import BodyInvalid, GateNotFound, V3Error
from session_manager.v3.events import EventHub
from session_manager.v3.ids import new_session_id, node_key

if TYPE_CHECKING:
    from litestar.datastructures import State

    from session_manager.settings import Settings
    from session_manager.store import SessionStore

__all__ = ("Reply", "V3Sessions")

log = logging.getLogger(__name__)

_SEEN_MAX = 10_000
"""Sessions whose knowledge position this replica remembers; forgotten ones ask once."""


class Reply(msgspec.Struct, frozen=True):
    """A processor's answer to one call: its status and decoded JSON body."""

    status: int
    body: Any


class V3Sessions:
    """Create, look up, time and end v3 sessions; call their processors."""

    def __init__(self, state: State) -> None:
        self._state = state
        self.settings: Settings = state.settings
        self._shared_store = self.settings.processor_storage == "mongodb"
        self._seen: dict[str, tuple[str, int]] = {}
        """For each session, its processor's endpoint and the node generation (MongoDB) or log
        position (memory) that processor is known to have reached."""
        self._ending: set[asyncio.Task[Any]] = set()
        self.events = EventHub()
        """``/ws/events``' listeners on this replica."""
        self.started_monotonic = time.monotonic()
        self.started_wall = time.time()
        key = self.settings.processor_secret_key.encode()
        self._token_key = hashlib.sha256(b"kato-v3-session-token:" + key).digest()

    # -- identity ------------------------------------------------------------------------------

    def _token(self, session_id: str) -> str:
        return hmac.new(self._token_key, session_id.encode(), hashlib.sha256).hexdigest()

    def now_ms(self) -> int:
        """The manager's clock (deadlines are on it)."""
        return int(self._state.clock.now_ms())

    @property
    def _store(self) -> SessionStore:
        store: SessionStore = self._state.store
        return store

    # -- create and look up --------------------------------------------------------------------

    async def create(
        self,
        node_id: str,
        *,
        tenant: Tenant | None,
        config: dict[str, Any] | None,
        metadata: dict[str, Any] | None,
        ttl_seconds: int | None,
    ) -> tuple[str, V3Record, int]:
        """Start a session for ``node_id``: its id, v3 record and v3 deadline (ms)."""
        if ttl_seconds is not None and ttl_seconds < 0:
            raise BodyInvalid(
                [
                    {
                        "type": "greater_than_equal",
                        "loc": ["body", "ttl_seconds"],
                        "msg": "Input should be greater than or equal to 0",
                        "input": ttl_seconds,
                    }
                ]
            )
        ttl = ttl_seconds or self.settings.kato_v3_session_ttl_s
        overrides = v3config.creation_overrides(config)
        # The clock's milliseconds (deadlines are on it), the wall clock's microseconds.
        created_us = self.now_ms() * 1000 + time.time_ns() // 1000 % 1000
        session_id = new_session_id(created_us // 1000)
        tenant_name = tenant.name if tenant is not None else "default"
        key = node_key(node_id)
        kb_id = f"v3-{tenant_name}-{key}"
        new = NewSession(
            user_id=f"v3-node-{key}",
            tenant=tenant,
            kb_id=kb_id,
            genes=v3config.genes_of(overrides),
            idle_timeout_s=ttl,
            labels={"api": "v3", SHARED_KNOWLEDGE[0]: SHARED_KNOWLEDGE[1]},
            session_id=session_id,
            token_hash=hash_token(self._token(session_id)),
        )
        record = V3Record(
            node_id=node_id,
            kb_id=kb_id,
            tenant=tenant_name,
            created_at_us=created_us,
            ttl_seconds=ttl,
            metadata=metadata if metadata is not None else {},
            config=overrides,
        )
        deadline = created_us // 1000 + ttl * 1000
        # The v3 fields are written while the processor starts (nobody knows the id yet); a
        # create that fails takes them away again.
        outcomes: tuple[Any, Any] = await asyncio.gather(
            self._state.sessions.create(new, wait=True),
            self._store.v3.put(session_id, record, deadline),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                with contextlib.suppress(Exception):
                    await self._store.v3.forget(session_id)
                raise outcome
        return session_id, record, deadline

    async def find(self, session_id: str, tenant: str | None) -> tuple[V3Record, int] | None:
        """The live session's record and deadline; ``None`` when unknown or expired.

        An expired one is ended now (in the background). ``tenant``: the caller's, when v3
        routes need a key; another tenant's session is as unknown.
        """
        record, deadline = await self._store.v3.get(session_id)
        if record is None or deadline is None:
            return None
        if tenant is not None and record.tenant != tenant:
            return None
        if deadline < self.now_ms():
            self._end_later(session_id)
            return None
        return record, deadline

    async def gate(self, session_id: str, tenant: str | None) -> V3Record:
        """v3's session gate: the live session, its deadline moved; else the gate's 404."""
        found = await self.find(session_id, tenant)
        if found is None:
            raise GateNotFound(session_id)
        record, _ = found
        await self.extend(session_id, record.ttl_seconds)
        return record

    async def extend(self, session_id: str, ttl_seconds: int) -> int:
        """Set the v3 deadline to now + ``ttl_seconds``; ``<= 0`` ends the session (as v3)."""
        if ttl_seconds <= 0:
            await self.end(session_id)
            return 0
        deadline = self.now_ms() + ttl_seconds * 1000
        await self._store.v3.extend(session_id, deadline)
        return deadline

    async def save_config(
        self, session_id: str, record: V3Record, overrides: dict[str, Any]
    ) -> None:
        """Keep the session's new configuration overrides (its deadline as it is)."""
        _, deadline = await self._store.v3.get(session_id)
        if deadline is None:
            raise GateNotFound(session_id)
        changed = msgspec.structs.replace(record, config=overrides)
        await self._store.v3.put(session_id, changed, deadline)

    async def exists(self, session_id: str) -> tuple[bool, bool]:
        """``(exists, expired)`` without moving anything; an expired record is removed."""
        record, deadline = await self._store.v3.get(session_id)
        if record is None or deadline is None:
            return False, False
        if deadline < self.now_ms():
            await self.end(session_id, EndReason.IDLE)
            return False, True
        return True, False

    async def count(self) -> int:
        """Live v3 sessions (deadline not passed)."""
        return int(await self._store.v3.count(self.now_ms()))

    # -- end -----------------------------------------------------------------------------------

    async def end(self, session_id: str, reason: str = EndReason.DELETED) -> None:
        """Forget the v3 fields and end the session (its processor stops; knowledge stays)."""
        await self._store.v3.forget(session_id)
        self._seen.pop(session_id, None)
        with contextlib.suppress(SessionNotFound, SessionExpired):
            await self._state.sessions.end(session_id, reason)

    def _end_later(self, session_id: str) -> None:
        task = asyncio.create_task(self._end_quietly(session_id, EndReason.IDLE))
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)

    async def _end_quietly(self, session_id: str, reason: str) -> None:
        try:
            await self.end(session_id, reason)
        except Exception:
            log.warning("v3 session not ended", extra={"session_id": session_id}, exc_info=True)

    async def sweep(self, limit: int = 200) -> int:
        """End every v3 session whose deadline has passed; how many were due."""
        due = await self._store.v3.due(self.now_ms(), limit)
        for session_id in due:
            await self._end_quietly(session_id, EndReason.IDLE)
        return len(due)

    async def aclose(self) -> None:
        """Let background ends finish."""
        if self._ending:
            await asyncio.wait(list(self._ending), timeout=self.settings.stop_timeout_s + 5)

    async def node_pattern(
        self, node_id: str, pattern_id: str, tenant: str | None = None
    ) -> dict[str, Any] | None:
        """A pattern of the node, read through one of its live sessions; ``None`` if none has it."""
        page = await self._store.page(
            limit=1, user_id=f"v3-node-{node_key(node_id)}", tenant=tenant or "default"
        )
        for found_record in page.records:
            reply = await self.call(
                found_record.session_id, "GET", f"/pattern/{pattern_id}", check=False
            )
            if reply.status == 200 and isinstance(reply.body, dict):
                found: dict[str, Any] = reply.body["pattern"]
                return found
        return None

    # -- processor calls -----------------------------------------------------------------------

    async def call(
        self, session_id: str, method: str, path: str, body: Any = None, *, check: bool = True
    ) -> Reply:
        """One request to the session's processor through the proxy's path.

        ``check``: a processor's error answer becomes ``{"detail": …}`` (its 4xx status, else
        500). A session that
        ended underneath (admin, max age) is the gate's 404 and its v3 fields are dropped.
        """
        from session_manager.api.proxy import proxy_request

        content = b"" if body is None else msgspec.json.encode(body)
        headers = [
            (b"authorization", b"Bearer " + self._token(session_id).encode()),
            (b"content-type", b"application/json"),
        ]
        scope: Any = {
            "type": "http",
            "method": method,
            "headers": headers,
            "query_string": b"",
            "path": f"/session/{session_id}{path}",
            "raw_path": f"/session/{session_id}{path}".encode(),
        }
        try:
            response = await proxy_request(self._state, scope, content, session_id, manager=True)
        except (SessionNotFound, SessionExpired) as exc:
            await self._store.v3.forget(session_id)
            raise GateNotFound(session_id) from exc
        raw = response.body
        if response.stream is not None:
            raw = await response.stream.read()
            response.stream = None
        try:
            decoded = msgspec.json.decode(raw) if raw else None
        except msgspec.DecodeError as exc:
            raise ProcessorUnavailable("the processor sent a body that is not JSON") from exc
        reply = Reply(response.status, decoded)
        if check and not 200 <= reply.status < 300:
            # Input the processor refused stays a 4xx (v3 answers some of it with a 500).
            status = reply.status if 400 <= reply.status < 500 else 500
            raise V3Error(status, _processor_message(reply))
        return reply

    async def synced(self, session_id: str, record: V3Record) -> None:
        """Before a call that reads the node's patterns: catch up with the node's other sessions.

        MongoDB: re-read the shared store once another session learned or cleared. Memory
        stores: apply the node log's entries this processor has not applied yet. What this
        replica knows of a processor is keyed by its endpoint: a processor started since
        (restore, recovery) is asked afresh.
        """
        endpoint = await self._endpoint(session_id)
        known = self._known(session_id, endpoint)
        if self._shared_store:
            generation = int(await self._store.v3.generation(record.kb_id))
            if (known or 0) < generation:
                await self.call(session_id, "POST", "/knowledge/reload")
                self._remember(session_id, endpoint, generation)
            return
        length = int(await self._store.v3.log_length(record.kb_id))
        if known == length:
            return
        offset = known
        if offset is None:  # not known here: the processor knows
            offset = int((await self._sync(session_id, {"since": 0}))["offset"])
        for _ in range(2):  # a stale position is corrected once, from the processor's answer
            ops = await self._store.v3.log_since(record.kb_id, offset)
            reached = int((await self._sync(session_id, {"since": offset, "ops": ops}))["offset"])
            if reached == offset + len(ops):
                offset = reached
                break
            offset = reached
        self._remember(session_id, endpoint, offset)

    async def changed(self, session_id: str, record: V3Record) -> None:
        """After this session learned or cleared: the node's other sessions must catch up."""
        if self._shared_store:
            endpoint = await self._endpoint(session_id)
            before = self._known(session_id, endpoint) or 0
            generation = int(await self._store.v3.changed(record.kb_id))
            if generation == before + 1:  # nobody else changed it meanwhile: this one is current
                self._remember(session_id, endpoint, generation)
            return
        drained = (await self._sync(session_id, {"drain": True}))["drained"]
        if drained:
            await self._store.v3.log_append(record.kb_id, session_id, drained)

    async def _sync(self, session_id: str, body: dict[str, Any]) -> dict[str, Any]:
        reply: dict[str, Any] = (await self.call(session_id, "POST", "/knowledge/sync", body)).body
        return reply

    async def _endpoint(self, session_id: str) -> str:
        """Where the session's processor is (a route cached in memory, usually)."""
        try:
            route = await self._state.sessions.resolve(
                session_id, f"Bearer {self._token(session_id)}"
            )
        except (SessionNotFound, SessionExpired) as exc:
            await self._store.v3.forget(session_id)
            raise GateNotFound(session_id) from exc
        return str(route.endpoint)

    def _known(self, session_id: str, endpoint: str) -> int | None:
        seen = self._seen.get(session_id)
        return seen[1] if seen is not None and seen[0] == endpoint else None

    def _remember(self, session_id: str, endpoint: str, value: int) -> None:
        if len(self._seen) >= _SEEN_MAX:
            self._seen.clear()
        self._seen[session_id] = (endpoint, value)


def _processor_message(reply: Reply) -> str:
    """The processor's error message, for v3's ``{"detail": …}``."""
    body = reply.body
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    return f"processing failed (processor answered {reply.status})"
