"""The session API: create, inspect, keep alive and delete one session."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from session_manager.api.auth import creating_tenant, key_tenant
from session_manager.api.errors import documented
from session_manager.api.schemas import (
    GENE_NAMES,
    CreatedSession,
    CreateSession,
    KeepaliveReply,
    RotatedToken,
    SessionInfo,
    checked_genes,
)
from session_manager.errors import (
    BackendUnavailable,
    CapacityExceeded,
    Forbidden,
    InvalidGene,
    PayloadTooLarge,
    SessionConflict,
    SessionExpired,
    SessionNotFound,
    StartFailed,
    StoreUnavailable,
    Unauthorized,
    UnknownGeneName,
    ValidationFailed,
)
from session_manager.sessions import NewSession, Sessions
from session_manager.settings import Settings

__all__ = ("LiveGenesQuery", "SessionController")

_CREATE_ERRORS = documented(
    ValidationFailed,
    InvalidGene,
    UnknownGeneName,
    PayloadTooLarge,
    SessionConflict,
    Unauthorized,
    Forbidden,
    CapacityExceeded,
    StartFailed,
    StoreUnavailable,
    BackendUnavailable,
)
_SESSION_ERRORS = documented(Unauthorized, SessionNotFound, SessionExpired, StoreUnavailable)


LiveGenesQuery = Annotated[
    bool,
    QueryParameter(
        description="true: also read every gene's current value from the processor "
        "(one small request per gene; null unless the session is ready)",
    ),
]
"""``?live_genes=true``: the record alone never reaches the processor; this asks it."""


def _sessions(request: Request[Any, Any, Any]) -> Sessions:
    sessions: Sessions = request.app.state.sessions
    return sessions


def _public_url(request: Request[Any, Any, Any]) -> str:
    """The manager's address for clients (``PUBLIC_URL``): never the request's ``Host``."""
    settings: Settings = request.app.state.settings
    return settings.public_base_url()


class SessionController(Controller):
    """``/session``: create needs an API key, the rest the session token (unless set to none)."""

    path = "/session"
    tags = ["sessions"]  # noqa: RUF012

    @post("/create", status_code=HTTP_201_CREATED, responses=_CREATE_ERRORS)
    async def create(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[CreateSession],
        wait: Annotated[bool, QueryParameter(description="false: answer 202 at once")] = True,
    ) -> Response[CreatedSession]:
        """Start a processor for a new session; the token in the reply is shown only once.

        Needs ``Authorization: Bearer <API key>`` with scope ``sessions:create``: the session
        belongs to the key's tenant, within that tenant's quotas.
        """
        tenant = creating_tenant(request)
        new = NewSession(
            tenant=tenant,
            user_id=data.user_id,
            kb_id=data.kb_id,
            genes=checked_genes(data.genes) or {},
            idle_timeout_s=data.idle_timeout_s,
            max_age_s=data.max_age_s,
            labels=data.labels,
        )
        record, token = await _sessions(request).create(new, wait=wait)
        body = CreatedSession.of_new(record, _public_url(request), token)
        return Response(
            body,
            status_code=HTTP_201_CREATED if wait else HTTP_202_ACCEPTED,
            headers={"Location": f"/session/{record.session_id}"},
        )

    @get("/{session_id:str}", responses=_SESSION_ERRORS)
    async def read(
        self,
        request: Request[Any, Any, Any],
        session_id: FromPath[str],
        live_genes: LiveGenesQuery = False,
    ) -> SessionInfo:
        """The session's record and deadlines; ``?live_genes=true`` adds the processor's genes."""
        sessions = _sessions(request)
        record = await sessions.get(session_id, request.headers.get("authorization"))
        now = await sessions.live_genes(record, GENE_NAMES) if live_genes else None
        return SessionInfo.of(record, _public_url(request), live_genes=now)

    @post("/{session_id:str}/keepalive", status_code=200, responses=_SESSION_ERRORS)
    async def keepalive(
        self, request: Request[Any, Any, Any], session_id: FromPath[str]
    ) -> KeepaliveReply:
        """Push the idle deadline forward without touching the processor."""
        record = await _sessions(request).keepalive(
            session_id, request.headers.get("authorization")
        )
        return KeepaliveReply.of(record)

    @post(
        "/{session_id:str}/token",
        status_code=200,
        responses=documented(
            Unauthorized,
            Forbidden,
            SessionNotFound,
            SessionExpired,
            SessionConflict,
            StoreUnavailable,
        ),
    )
    async def rotate_token(
        self, request: Request[Any, Any, Any], session_id: FromPath[str]
    ) -> RotatedToken:
        """Replace the session's token; the old one is void at once.

        Send the current token, or an API key of the session's tenant (scope
        ``sessions:create`` or ``admin``): an app backend can void a leaked token it no longer
        knows. Another tenant's key gets 404, as for a session that does not exist.
        """
        token = await _sessions(request).rotate_token(
            session_id, request.headers.get("authorization"), tenant=key_tenant(request)
        )
        return RotatedToken(session_id=session_id, token=token)

    @delete("/{session_id:str}", status_code=HTTP_204_NO_CONTENT, responses=_SESSION_ERRORS)
    async def remove(self, request: Request[Any, Any, Any], session_id: FromPath[str]) -> None:
        """Stop the processor and end the session; later requests get 410."""
        await _sessions(request).delete(session_id, request.headers.get("authorization"))
