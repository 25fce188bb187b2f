"""What the sync and async clients share: each call as data, the retry rule, decoding replies.

A method of ``Session``/``AsyncSession`` (or ``Client``/``AsyncClient``) only builds a ``Call``
here and hands it to its transport, so both flavours send exactly the same requests.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from typing import Any, Generic, TypeVar, cast
from urllib.parse import quote

import msgspec

from kato_sessions.errors import KatoError, SessionNotReady
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
    RotatedToken,
    SessionInfo,
    Stats,
    Stm,
)

__all__ = (
    "DEFAULT_URL",
    "ENV_TOKEN",
    "ENV_URL",
    "Call",
    "Retry",
    "resend_delay",
    "retry_delay",
)

T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:8080"
"""Where ``make run`` (``kato-sessions serve``) listens by default."""
ENV_URL = "KATO_SESSIONS_URL"
"""The manager's base URL when none is given."""
ENV_TOKEN = "KATO_SESSIONS_TOKEN"  # noqa: S105 (a variable name, not a secret)
"""The credential when none is given: an API key (creates) or the admin token (admin calls)."""

STARTING = "starting"

_NO_BODY = cast("type[Any]", type(None))


@dataclasses.dataclass(frozen=True, slots=True)
class Retry:
    """How long a call keeps retrying what the service says is worth retrying.

    A ``429`` or ``503`` carrying ``Retry-After`` (a limit reached, a session still starting,
    restoring or recovering, Redis briefly away: nothing was applied) is sent again after the
    time it names, as long as the waits add up to at most ``timeout_s``; ``Retry(0)`` turns
    retries off. A session created without waiting (``202``, ``starting``) is polled until
    ready within the same budget. A create, which carries an ``Idempotency-Key``, is also sent
    again after a network failure (the manager may have made the session and lost the reply:
    the key makes the retry answer with that same session), pausing ``poll_s`` doubling to 1 s.
    """

    timeout_s: float = 60.0
    poll_s: float = 0.1
    """First pause between two looks at a starting session (doubles up to 1 s)."""


def retry_delay(error: KatoError, waited_s: float, retry: Retry) -> float | None:
    """Seconds to wait before sending again, or None to raise ``error`` now."""
    if error.status not in (429, 503) or error.retry_after is None:
        return None
    delay = max(error.retry_after, 0.05)
    if waited_s + delay > retry.timeout_s:
        return None
    return delay


def resend_delay(pause_s: float, waited_s: float, retry: Retry) -> float | None:
    """The pause before resending an idempotent call after a network failure, or None."""
    delay = min(max(pause_s, 0.01), 1.0)
    return None if waited_s + delay > retry.timeout_s else delay


def still_starting(session_id: str, waited_s: float) -> KatoError:
    """What ``wait_ready`` raises when the session is still starting at the end of its budget."""
    return SessionNotReady(
        503,
        "SESSION_NOT_READY",
        f"session still starting after {waited_s:.1f} s",
        {"session_id": session_id, "status": STARTING},
    )


def env_url(url: str | None) -> str:
    """``url``, else ``KATO_SESSIONS_URL``, else the default of ``make run``."""
    return (url or os.environ.get(ENV_URL) or DEFAULT_URL).rstrip("/")


def env_token(token: str | None) -> str | None:
    """``token``, else ``KATO_SESSIONS_TOKEN`` (None when neither is set)."""
    return token or os.environ.get(ENV_TOKEN) or None


@dataclasses.dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request and the type its reply decodes to (``bytes``: as sent; None: no body)."""

    method: str
    path: str
    reply: type[T]
    params: Mapping[str, str] | None = None
    body: bytes | None = None
    headers: Mapping[str, str] | None = None
    idempotent: bool = False
    """Safe to send again when the connection failed before a reply came (``resend_delay``)."""

    def decode(self, content: bytes) -> T:
        """The reply body as ``reply``."""
        if self.reply is _NO_BODY:
            return cast("T", None)
        if self.reply is bytes:
            return cast("T", content)
        return msgspec.json.decode(content, type=self.reply)


def bearer(token: str | None) -> dict[str, str]:
    """The ``Authorization`` header for ``token`` (none without one)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


_JSON = {"Content-Type": "application/json"}


def _json(value: Any) -> bytes:
    return msgspec.json.encode(value)


def _observation(
    strings: Iterable[str],
    vectors: Iterable[Iterable[float]],
    emotives: Mapping[str, float] | None,
    unique_id: str | None,
) -> Observation:
    return Observation(
        strings=list(strings),
        vectors=[list(v) for v in vectors],
        emotives=dict(emotives or {}),
        unique_id=unique_id,
    )


# -- the manager's own routes --------------------------------------------------------------------


def create(
    *,
    user_id: str,
    kb_id: str | None,
    genes: Mapping[str, Any] | None,
    idle_timeout_s: int | None,
    max_age_s: int | None,
    labels: Mapping[str, str] | None,
    wait: bool,
    idempotency_key: str,
) -> Call[CreatedSession]:
    """``POST /session/create``; every try of it carries ``idempotency_key``."""
    body: dict[str, Any] = {"user_id": user_id}
    optional = {
        "kb_id": kb_id,
        "genes": dict(genes) if genes is not None else None,
        "idle_timeout_s": idle_timeout_s,
        "max_age_s": max_age_s,
        "labels": dict(labels) if labels else None,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    params = None if wait else {"wait": "false"}
    headers = {**_JSON, "Idempotency-Key": idempotency_key}
    return Call(
        "POST", "/session/create", CreatedSession, params, _json(body), headers, idempotent=True
    )


def _session_path(session_id: str, rest: str = "") -> str:
    return f"/session/{quote(session_id, safe='')}{rest}"


def info(session_id: str, *, live_genes: bool) -> Call[SessionInfo]:
    """``GET /session/<id>``."""
    params = {"live_genes": "true"} if live_genes else None
    return Call("GET", _session_path(session_id), SessionInfo, params)


def keepalive(session_id: str) -> Call[KeepaliveReply]:
    """``POST /session/<id>/keepalive``."""
    return Call("POST", _session_path(session_id, "/keepalive"), KeepaliveReply)


def rotate_token(session_id: str) -> Call[RotatedToken]:
    """``POST /session/<id>/token``."""
    return Call("POST", _session_path(session_id, "/token"), RotatedToken)


def delete(session_id: str) -> Call[None]:
    """``DELETE /session/<id>``."""
    return Call("DELETE", _session_path(session_id), _NO_BODY)


# -- the processor, through the proxy ------------------------------------------------------------


def observe(
    session_id: str,
    strings: Iterable[str],
    vectors: Iterable[Iterable[float]],
    emotives: Mapping[str, float] | None,
    unique_id: str | None,
) -> Call[ObserveResult]:
    """``POST /observe``."""
    body = _json(_observation(strings, vectors, emotives, unique_id))
    return Call("POST", _session_path(session_id, "/observe"), ObserveResult, None, body, _JSON)


def observe_sequence(
    session_id: str, observations: Iterable[Observation | Mapping[str, Any]]
) -> Call[ObserveSequenceResult]:
    """``POST /observe-sequence``: all or nothing, in one round trip."""
    items = [
        o if isinstance(o, Observation) else msgspec.convert(dict(o), Observation)
        for o in observations
    ]
    body = _json({"observations": items})
    path = _session_path(session_id, "/observe-sequence")
    return Call("POST", path, ObserveSequenceResult, None, body, _JSON)


def learn(session_id: str) -> Call[LearnResult]:
    """``POST /learn``."""
    return Call("POST", _session_path(session_id, "/learn"), LearnResult)


def predictions(session_id: str, unique_id: str | None) -> Call[Predictions]:
    """``GET /predictions``."""
    params = {"unique_id": unique_id} if unique_id else None
    return Call("GET", _session_path(session_id, "/predictions"), Predictions, params)


def stm(session_id: str) -> Call[Stm]:
    """``GET /stm``."""
    return Call("GET", _session_path(session_id, "/stm"), Stm)


def clear_stm(session_id: str) -> Call[Message]:
    """``POST /clear-stm``."""
    return Call("POST", _session_path(session_id, "/clear-stm"), Message)


def clear_all(session_id: str) -> Call[Message]:
    """``POST /clear-all``."""
    return Call("POST", _session_path(session_id, "/clear-all"), Message)


def update_genes(session_id: str, genes: Mapping[str, Any]) -> Call[Message]:
    """``POST /genes/update``."""
    body = _json({"genes": dict(genes)})
    return Call("POST", _session_path(session_id, "/genes/update"), Message, None, body, _JSON)


def gene(session_id: str, name: str) -> Call[Gene]:
    """``GET /gene/<name>``."""
    return Call("GET", _session_path(session_id, f"/gene/{quote(name, safe='')}"), Gene)


def pattern(session_id: str, pattern_id: str) -> Call[Pattern]:
    """``GET /pattern/<id>``."""
    path = _session_path(session_id, f"/pattern/{quote(pattern_id, safe='')}")
    return Call("GET", path, Pattern)


def percept_data(session_id: str) -> Call[PerceptData]:
    """``GET /percept-data``."""
    return Call("GET", _session_path(session_id, "/percept-data"), PerceptData)


def cognition_data(session_id: str) -> Call[CognitionData]:
    """``GET /cognition-data``."""
    return Call("GET", _session_path(session_id, "/cognition-data"), CognitionData)


def metrics(session_id: str) -> Call[ProcessorMetrics]:
    """``GET /metrics`` of the processor."""
    return Call("GET", _session_path(session_id, "/metrics"), ProcessorMetrics)


def status(session_id: str) -> Call[ProcessorStatus]:
    """``GET /status``."""
    return Call("GET", _session_path(session_id, "/status"), ProcessorStatus)


def health(session_id: str) -> Call[Health]:
    """``GET /health`` of the processor."""
    return Call("GET", _session_path(session_id, "/health"), Health)


def get_state(session_id: str) -> Call[bytes]:
    """``GET /state``: the snapshot as JSON bytes (asked uncompressed)."""
    headers = {"Accept-Encoding": "identity"}
    return Call("GET", _session_path(session_id, "/state"), bytes, None, None, headers)


def put_state(session_id: str, state: bytes) -> Call[ProcessorStatus]:
    """``PUT /state``: restore a snapshot ``get_state`` returned."""
    path = _session_path(session_id, "/state")
    return Call("PUT", path, ProcessorStatus, None, state, _JSON)


# -- admin ---------------------------------------------------------------------------------------


def list_sessions(
    *,
    status: str | None,
    user_id: str | None,
    label: str | None,
    tenant: str | None,
    cursor: str | None,
    limit: int,
) -> Call[AdminSessionPage]:
    """``GET /admin/sessions``: one page."""
    given = {
        "status": status,
        "user_id": user_id,
        "label": label,
        "tenant": tenant,
        "cursor": cursor,
        "limit": str(limit),
    }
    params = {k: v for k, v in given.items() if v is not None}
    return Call("GET", "/admin/sessions", AdminSessionPage, params)


def admin_session(session_id: str, *, live_genes: bool) -> Call[AdminSession]:
    """``GET /admin/sessions/<id>``."""
    params = {"live_genes": "true"} if live_genes else None
    return Call("GET", f"/admin/sessions/{quote(session_id, safe='')}", AdminSession, params)


def admin_delete(session_id: str) -> Call[None]:
    """``DELETE /admin/sessions/<id>``."""
    return Call("DELETE", f"/admin/sessions/{quote(session_id, safe='')}", _NO_BODY)


def admin_keepalive(session_id: str) -> Call[KeepaliveReply]:
    """``POST /admin/sessions/<id>/keepalive``."""
    path = f"/admin/sessions/{quote(session_id, safe='')}/keepalive"
    return Call("POST", path, KeepaliveReply)


def stats() -> Call[Stats]:
    """``GET /admin/stats``."""
    return Call("GET", "/admin/stats", Stats)


def reap() -> Call[ReapReport]:
    """``POST /admin/reap``."""
    return Call("POST", "/admin/reap", ReapReport)


def processors() -> Call[list[ProcessorHealth]]:
    """``GET /admin/processors``."""
    return Call("GET", "/admin/processors", list[ProcessorHealth])
