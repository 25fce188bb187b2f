"""The blocking client: ``Client`` (create, attach, admin) and ``Session`` (one session's calls).

>>> with Client("http://127.0.0.1:8080", api_key=KEY) as client:
...     with client.create("alice", genes={"recall_threshold": 0.2}) as session:
...         session.observe(["hello"])
...         session.predictions()
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from kato_sessions import _calls
from kato_sessions._calls import STARTING, Call, Retry, bearer, env_token, env_url, still_starting
from kato_sessions.errors import ConnectionFailed, SessionExpired, SessionNotFound, error_for
from kato_sessions.models import (
    AdminSession,
    AdminSessionPage,
    CognitionData,
    CreatedSession,
    Gene,
    Health,
    KeepaliveReply,
    LearnResult,
    Message,
    Observation,
    ObserveResult,
    ObserveSequenceResult,
    Pattern,
    PerceptData,
    Predictions,
    ProcessorHealth,
    ProcessorMetrics,
    ProcessorStatus,
    ReapReport,
    SessionInfo,
    Stats,
    Stm,
)

__all__ = ("Client", "Session")

T = TypeVar("T")


class Client:
    """A connection pool to one manager; ``api_key`` creates sessions, ``admin_token`` administers.

    ``url`` defaults to ``KATO_SESSIONS_URL`` (else ``http://127.0.0.1:8080``), ``api_key`` to
    ``KATO_SESSIONS_TOKEN``; ``admin_token`` to ``api_key`` (an API key with scope ``admin``
    may list and remove its tenant's sessions). ``retry`` says how long to wait through
    ``429``/``503`` answers that carry ``Retry-After``.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        admin_token: str | None = None,
        timeout_s: float = 60.0,
        retry: Retry | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        self.url = env_url(url)
        self.api_key = env_token(api_key)
        self.admin_token = admin_token or self.api_key
        self.retry = retry or Retry()
        self._http = http or httpx.Client(base_url=self.url, timeout=timeout_s)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def send(self, call: Call[T], token: str | None) -> T:
        """Send ``call`` with ``token``, retrying what ``Retry-After`` says may be retried."""
        waited = 0.0
        headers = {**(call.headers or {}), **bearer(token)}
        pause = self.retry.poll_s
        while True:
            try:
                response = self._http.request(
                    call.method, call.path, params=call.params, content=call.body, headers=headers
                )
            except httpx.TransportError as exc:
                resend = _calls.resend_delay(pause, waited, self.retry) if call.idempotent else None
                if resend is None:
                    raise ConnectionFailed(0, "CONNECTION_FAILED", f"{self.url}: {exc!r}") from exc
                time.sleep(resend)
                waited, pause = waited + resend, pause * 2
                continue
            if response.is_success:
                return call.decode(response.content)
            error = error_for(
                response.status_code, response.content, response.headers.get("retry-after")
            )
            delay = _calls.retry_delay(error, waited, self.retry)
            if delay is None:
                raise error
            time.sleep(delay)
            waited += delay

    # -- sessions --------------------------------------------------------------------------------

    def create(
        self,
        user_id: str,
        *,
        kb_id: str | None = None,
        genes: Mapping[str, Any] | None = None,
        idle_timeout_s: int | None = None,
        max_age_s: int | None = None,
        labels: Mapping[str, str] | None = None,
        wait: bool = True,
        idempotency_key: str | None = None,
    ) -> Session:
        """A new session (``wait=False``: at once, still ``starting``; see ``wait_ready``).

        ``idempotency_key`` (default: a new random one per call) is sent with every try, so a
        create resent after a lost reply, or repeated by you with the same key (on any manager
        replica), makes one session: the answer names it, with a fresh token.
        """
        created = self.send(
            _calls.create(
                user_id=user_id,
                kb_id=kb_id,
                genes=genes,
                idle_timeout_s=idle_timeout_s,
                max_age_s=max_age_s,
                labels=labels,
                wait=wait,
                idempotency_key=idempotency_key or uuid.uuid4().hex,
            ),
            self.api_key,
        )
        return Session(self, created.session_id, created.token, created=created)

    def session(self, session_id: str, token: str | None) -> Session:
        """A session created earlier (by id and its token)."""
        return Session(self, session_id, token)

    # -- admin -----------------------------------------------------------------------------------

    def list_sessions(
        self,
        *,
        status: str | None = None,
        user_id: str | None = None,
        label: str | None = None,
        tenant: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> AdminSessionPage:
        """One page of live sessions, oldest first; ``label`` is ``key:value``."""
        call = _calls.list_sessions(
            status=status, user_id=user_id, label=label, tenant=tenant, cursor=cursor, limit=limit
        )
        return self.send(call, self.admin_token)

    def iter_sessions(
        self,
        *,
        status: str | None = None,
        user_id: str | None = None,
        label: str | None = None,
        tenant: str | None = None,
        page_size: int = 100,
    ) -> Iterator[AdminSession]:
        """Every live session matching the filters, page after page."""
        cursor: str | None = None
        while True:
            page = self.list_sessions(
                status=status,
                user_id=user_id,
                label=label,
                tenant=tenant,
                cursor=cursor,
                limit=page_size,
            )
            yield from page.sessions
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def inspect(self, session_id: str, *, live_genes: bool = False) -> AdminSession:
        """A session's admin view (where its processor runs; ``live_genes`` on request)."""
        return self.send(_calls.admin_session(session_id, live_genes=live_genes), self.admin_token)

    def remove(self, session_id: str) -> None:
        """End a session as an admin (reason ``deleted``)."""
        self.send(_calls.admin_delete(session_id), self.admin_token)

    def keepalive(self, session_id: str) -> KeepaliveReply:
        """Push a session's idle deadline forward as an admin."""
        return self.send(_calls.admin_keepalive(session_id), self.admin_token)

    def stats(self) -> Stats:
        """Sessions by status, capacity, snapshots, the warm pool (ADMIN_TOKEN only)."""
        return self.send(_calls.stats(), self.admin_token)

    def reap(self) -> ReapReport:
        """Run a reaper pass now and say what it did (ADMIN_TOKEN only)."""
        return self.send(_calls.reap(), self.admin_token)

    def processors(self) -> list[ProcessorHealth]:
        """The static processors of gateway mode and their health (empty otherwise)."""
        return self.send(_calls.processors(), self.admin_token)


class Session:
    """One session: the processor's endpoints, keepalive, token rotation, delete.

    Used as a context manager, the session is deleted on the way out (an already ended one
    is fine). ``created`` is the create reply when this object made the session.
    """

    def __init__(
        self,
        client: Client,
        session_id: str,
        token: str | None,
        *,
        created: CreatedSession | None = None,
    ) -> None:
        self.client = client
        self.session_id = session_id
        self.token = token
        self.created = created

    def __repr__(self) -> str:
        return f"Session({self.session_id!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with contextlib.suppress(SessionExpired, SessionNotFound):
            self.delete()

    def _send(self, call: Call[T]) -> T:
        return self.client.send(call, self.token)

    # -- the session itself ----------------------------------------------------------------------

    def info(self, *, live_genes: bool = False) -> SessionInfo:
        """Record and deadlines; ``live_genes``: every gene's value read from the processor."""
        return self._send(_calls.info(self.session_id, live_genes=live_genes))

    def wait_ready(self) -> SessionInfo:
        """Wait while the session is ``starting`` (within the client's retry budget)."""
        pause, waited = self.client.retry.poll_s, 0.0
        while True:
            found = self.info()
            if found.status != STARTING:
                return found
            if waited + pause > self.client.retry.timeout_s:
                raise still_starting(self.session_id, waited)
            time.sleep(pause)
            waited += pause
            pause = min(pause * 2, 1.0)

    def keepalive(self) -> KeepaliveReply:
        """Push the idle deadline forward without touching the processor."""
        return self._send(_calls.keepalive(self.session_id))

    def rotate_token(self) -> str:
        """Replace the token (the old one is void at once); this object keeps the new one."""
        self.token = self._send(_calls.rotate_token(self.session_id)).token
        return self.token

    def delete(self) -> None:
        """End the session; later calls raise ``SessionExpired``."""
        self._send(_calls.delete(self.session_id))

    # -- the processor ---------------------------------------------------------------------------

    def observe(
        self,
        strings: Iterable[str] = (),
        vectors: Iterable[Iterable[float]] = (),
        emotives: Mapping[str, float] | None = None,
        unique_id: str | None = None,
    ) -> ObserveResult:
        """One observation."""
        call = _calls.observe(self.session_id, strings, vectors, emotives, unique_id)
        return self._send(call)

    def observe_sequence(
        self, observations: Iterable[Observation | Mapping[str, Any]]
    ) -> ObserveSequenceResult:
        """Many observations in order, in one request; one the engine refuses refuses all."""
        return self._send(_calls.observe_sequence(self.session_id, observations))

    def learn(self) -> LearnResult:
        """Learn the short-term memory as a pattern."""
        return self._send(_calls.learn(self.session_id))

    def predictions(self, unique_id: str | None = None) -> Predictions:
        """The latest predictions, or those stored for ``unique_id``."""
        return self._send(_calls.predictions(self.session_id, unique_id))

    def stm(self) -> Stm:
        """The short-term memory."""
        return self._send(_calls.stm(self.session_id))

    def clear_stm(self) -> Message:
        """Clear the short-term memory."""
        return self._send(_calls.clear_stm(self.session_id))

    def clear_all(self) -> Message:
        """Clear the short-term memory, time and the whole knowledge base (genes stay)."""
        return self._send(_calls.clear_all(self.session_id))

    def update_genes(self, genes: Mapping[str, Any]) -> Message:
        """Apply every gene update or, when one is refused, none."""
        return self._send(_calls.update_genes(self.session_id, genes))

    def gene(self, name: str) -> Gene:
        """One gene's live value."""
        return self._send(_calls.gene(self.session_id, name))

    def pattern(self, pattern_id: str) -> Pattern:
        """A learned pattern, by ``PTRN|<hash>`` or bare hash."""
        return self._send(_calls.pattern(self.session_id, pattern_id))

    def percept_data(self) -> PerceptData:
        """The last observation as received."""
        return self._send(_calls.percept_data(self.session_id))

    def cognition_data(self) -> CognitionData:
        """Predictions, emotives, last event and short-term memory."""
        return self._send(_calls.cognition_data(self.session_id))

    def metrics(self) -> ProcessorMetrics:
        """The processor's counters."""
        return self._send(_calls.metrics(self.session_id))

    def status(self) -> ProcessorStatus:
        """The processor's identity, uptime, STM length and time."""
        return self._send(_calls.status(self.session_id))

    def health(self) -> Health:
        """The processor's liveness."""
        return self._send(_calls.health(self.session_id))

    def get_state(self) -> bytes:
        """A snapshot of the processor's state (JSON), for ``put_state``."""
        return self._send(_calls.get_state(self.session_id))

    def put_state(self, state: bytes) -> ProcessorStatus:
        """Restore a snapshot ``get_state`` returned."""
        return self._send(_calls.put_state(self.session_id, state))
