"""``/`` and ``/console…``: the home page and the admin console's pages and actions."""

from __future__ import annotations

import hashlib
import hmac
import mimetypes
from importlib import resources
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from litestar import MediaType, Request, Response, get, post
from litestar.datastructures import CacheControlHeader, Cookie
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect

from session_manager.api.admin import (
    hibernate_session,
    keepalive_session,
    restore_session,
    stats_of,
    visible_record,
)
from session_manager.api.auth import admin_of
from session_manager.api.schemas import GENE_NAMES, AdminSession
from session_manager.errors import KatoError, ValidationFailed
from session_manager.models import EndReason, SessionStatus
from session_manager.sessions import Sessions
from session_manager.store import SessionStore, decode_cursor

__all__ = ("CONSOLE_HANDLERS",)

_CACHED = CacheControlHeader(max_age=3600)
"""Packaged files change only with the package: browsers may keep them an hour."""

_VERSION = "0.1.0"
"""The manager's version, as in its OpenAPI document."""

COOKIE = "kato_console"
_PAGE_SIZE = 50
_STATIC = frozenset({"console.css", "console.js"})
_ACTIONS = ("keepalive", "hibernate", "restore", "delete")
_templates = Environment(
    loader=PackageLoader("session_manager.console", "templates"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
_AnyRequest = Request[Any, Any, Any]


def _page(name: str, status_code: int = 200, **context: Any) -> Response[str]:
    html = _templates.get_template(name).render(**context)
    return Response(html, status_code=status_code, media_type=MediaType.HTML)


def _csrf(token: str) -> str:
    """The form token of a credential: known to its holder's pages, not to another site."""
    return hmac.new(token.encode(), b"kato-console-form", hashlib.sha256).hexdigest()[:32]


class _Admin:
    """The logged-in admin: its credential and the tenant it is limited to (None: all)."""

    def __init__(self, token: str, tenant: str | None) -> None:
        self.token, self.tenant = token, tenant
        self.csrf = _csrf(token)


def _admin(request: _AnyRequest) -> _Admin | None:
    """The admin whose cookie this is, or ``None`` (no cookie, or no longer valid)."""
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    try:
        return _Admin(token, admin_of(request, token))
    except KatoError:
        return None


def _to_login() -> Redirect:
    return Redirect("/console/login", status_code=303)


# -- home ------------------------------------------------------------------------------------


_LINKS = {
    "console": "/console",
    "api_docs": "/schema",
    "openapi": "/schema/openapi.json",
    "health": "/health",
    "ready": "/ready",
    "metrics": "/metrics",
    "create_session": "/session/create",
}


@get("/", include_in_schema=False)
async def home(request: _AnyRequest) -> Response[Any]:
    """What this server is and where to go: HTML for a browser, JSON for anything else."""
    if "text/html" in request.headers.get("accept", ""):
        return _page("home.html", links=_LINKS, version=_VERSION)
    return Response({"service": "kato-sessions manager", "version": _VERSION, "links": _LINKS})


# -- login -----------------------------------------------------------------------------------


@get("/console/login", include_in_schema=False)
async def login_form() -> Response[str]:
    """The form that takes the admin credential."""
    return _page("login.html", error=None)


@post("/console/login", include_in_schema=False, status_code=303)
async def login(request: _AnyRequest) -> Response[Any]:
    """Check the credential as ``/admin`` would; keep it in the console's cookie."""
    form = await request.form()
    token = str(form.get("token", "")).strip()
    try:
        if not token:
            raise ValidationFailed("enter the ADMIN_TOKEN or an API key with scope admin")
        admin_of(request, token)
    except KatoError as exc:
        return _page("login.html", status_code=exc.status, error=exc.message)
    secure = request.app.state.settings.public_base_url().startswith("https:")
    cookie = Cookie(
        key=COOKIE,
        value=token,
        path="/console",
        httponly=True,
        samesite="strict",
        secure=secure,
    )
    return Redirect("/console", status_code=303, cookies=[cookie])


@post("/console/logout", include_in_schema=False, status_code=303)
async def logout() -> Redirect:
    """Forget the credential."""
    cookie = Cookie(key=COOKIE, value="", path="/console", max_age=0, httponly=True)
    return Redirect("/console/login", status_code=303, cookies=[cookie])


# -- pages -----------------------------------------------------------------------------------


def _counters(request: _AnyRequest) -> dict[str, float]:
    """This replica's starts, reaps, hibernations and restores since it started (metrics)."""
    wanted = {
        "kato_sessions_created_total": "sessions created",
        "kato_hibernations_total": "hibernations",
        "kato_restores_total": "restores",
        "kato_orphans_removed_total": "orphans removed",
    }
    counters: dict[str, float] = {}
    for metric in request.app.state.metrics.registry.collect():
        for sample in metric.samples:
            if sample.name in wanted:
                counters[wanted[sample.name]] = sample.value
            elif sample.name == "kato_session_start_seconds_count":
                counters[f"starts {sample.labels['outcome']}"] = sample.value
            elif sample.name == "kato_reaped_total":
                counters[f"reaped ({sample.labels['reason']})"] = sample.value
            elif sample.name == "kato_recoveries_total":
                counters[f"recoveries ({sample.labels['by']})"] = sample.value
    return counters


@get("/console", include_in_schema=False)
async def sessions_page(request: _AnyRequest) -> Response[Any]:
    """Live sessions (filters, cursor pagination) and, for the ADMIN_TOKEN, the stats."""
    admin = _admin(request)
    if admin is None:
        return _to_login()
    query = request.query_params
    filters = {
        name: value
        for name in ("status", "user_id", "tenant", "label")
        if (value := (query.get(name) or "").strip())
    }
    cursor = query.get("cursor") or None
    error = None
    page_sessions: list[AdminSession] = []
    next_cursor = None
    try:
        if cursor is not None and decode_cursor(cursor) is None:
            raise ValidationFailed("that page link is not one this console made")
        status = SessionStatus(filters["status"]) if "status" in filters else None
        label = None
        if "label" in filters:
            key, sep, value = filters["label"].partition(":")
            if not sep or not key:
                raise ValidationFailed("the label filter is key:value")
            label = (key, value)
        tenant = admin.tenant or filters.get("tenant")
        store: SessionStore = request.app.state.store
        page = await store.page(
            limit=_PAGE_SIZE,
            cursor=cursor,
            status=status,
            user_id=filters.get("user_id"),
            label=label,
            tenant=tenant,
        )
        base = request.app.state.settings.public_base_url()
        page_sessions = [AdminSession.of_record(r, base) for r in page.records]
        next_cursor = page.next_cursor
    except ValueError:
        error = f"unknown status {filters.get('status')!r}"
    except KatoError as exc:
        error = exc.message
    stats = counters = None
    if admin.tenant is None:
        try:
            stats = await stats_of(request.app.state)
        except KatoError as exc:
            error = error or exc.message
        counters = _counters(request)
    return _page(
        "sessions.html",
        admin=admin,
        sessions=page_sessions,
        filters=filters,
        statuses=[str(s) for s in SessionStatus],
        next_url=f"/console?{urlencode({**filters, 'cursor': next_cursor})}"
        if next_cursor
        else None,
        first_url=f"/console?{urlencode(filters)}" if cursor else None,
        stats=stats,
        counters=counters,
        error=error,
        notice=query.get("notice"),
    )


@get("/console/sessions/{session_id:str}", include_in_schema=False)
async def session_page(request: _AnyRequest, session_id: FromPath[str]) -> Response[Any]:
    """One session: status, deadlines, processor, genes (live ones too), its last event."""
    admin = _admin(request)
    if admin is None:
        return _to_login()
    sessions: Sessions = request.app.state.sessions
    try:
        record = await visible_record(sessions, admin.tenant, session_id)
    except KatoError as exc:
        return _page(
            "session.html", status_code=exc.status, admin=admin, session=None, error=exc.message
        )
    live = await sessions.live_genes(record, GENE_NAMES)
    view = AdminSession.of_record(
        record, request.app.state.settings.public_base_url(), live_genes=live
    )
    return _page(
        "session.html",
        admin=admin,
        session=view,
        error=None,
        notice=request.query_params.get("notice"),
    )


@post("/console/sessions/{session_id:str}/{action:str}", include_in_schema=False, status_code=303)
async def session_action(
    request: _AnyRequest, session_id: FromPath[str], action: FromPath[str]
) -> Response[Any]:
    """Keepalive, hibernate, restore or delete; back to the page the form was on."""
    admin = _admin(request)
    if admin is None:
        return _to_login()
    form = await request.form()
    if action not in _ACTIONS or not hmac.compare_digest(str(form.get("csrf", "")), admin.csrf):
        return _page(
            "session.html",
            status_code=403,
            admin=admin,
            session=None,
            error="this form did not come from the console: reload the page",
        )
    sessions: Sessions = request.app.state.sessions
    back = str(form.get("back", "")) or f"/console/sessions/{session_id}"
    if not back.startswith("/console"):
        back = "/console"
    try:
        record = await visible_record(sessions, admin.tenant, session_id)
        if action == "keepalive":
            await keepalive_session(sessions, record)
        elif action == "hibernate":
            await hibernate_session(sessions, record)
        elif action == "restore":
            await restore_session(sessions, record)
        else:
            await sessions.end(session_id, EndReason.DELETED)
            back = "/console" if back.startswith("/console/sessions/") else back
        notice = f"{action}: done ({session_id})"
    except KatoError as exc:
        notice = f"{action} failed: {exc.code}: {exc.message}"
    separator = "&" if "?" in back else "?"
    return Redirect(f"{back}{separator}{urlencode({'notice': notice})}", status_code=303)


@get("/console/static/{name:str}", include_in_schema=False, cache_control=_CACHED)
async def static_file(name: FromPath[str]) -> Response[bytes]:
    """The console's stylesheet and script, from the package."""
    if name not in _STATIC:
        raise NotFoundException(f"no file {name}")
    body = resources.files("session_manager.console").joinpath("static", name).read_bytes()
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Response(body, media_type=media_type)


CONSOLE_HANDLERS = (
    home,
    login_form,
    login,
    logout,
    sessions_page,
    session_page,
    session_action,
    static_file,
)
