"""Who is calling: the API key that creates a session, and the admin (deployment or tenant).

Session tokens are checked by ``Sessions``. Every credential is read from the bearer token and
compared the same way (``sessions.tokens``): in constant time, against what the manager keeps
(the ``ADMIN_TOKEN``, the API keys' SHA-256 hashes).
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from session_manager.errors import Forbidden, Unauthorized
from session_manager.models import Tenant
from session_manager.sessions.tokens import bearer_token, same_secret
from session_manager.settings import Settings
from session_manager.tenants import ADMIN, CREATE, Tenants

__all__ = (
    "admin_of",
    "admin_tenant",
    "creating_tenant",
    "key_tenant",
    "require_admin",
    "require_deployment_admin",
)

_Connection = ASGIConnection[Any, Any, Any, Any]
_ADMIN_TENANT = "kato_admin_tenant"
"""Where ``require_admin`` leaves the admin's tenant in the request's state."""


def creating_tenant(connection: _Connection) -> Tenant:
    """The tenant a ``POST /session/create`` creates for: its API key's (scope ``sessions:create``).

    Without a key: 401, unless ``CREATE_AUTH=none`` makes it the ``default`` tenant. A key
    that is given is always checked, trusted network or not.
    """
    settings: Settings = connection.app.state.settings
    tenants: Tenants = connection.app.state.tenants
    token = bearer_token(connection.headers.get("authorization"))
    if token is None:
        if settings.create_auth == "none":
            return tenants.default
        raise Unauthorized("missing API key (Authorization: Bearer <API key>)")
    key = tenants.find(token)
    if key is None:
        raise Unauthorized("wrong API key")
    if not key.allows(CREATE):
        raise Forbidden(f"this API key may not create sessions (scope {CREATE})")
    return key.tenant


def key_tenant(connection: _Connection) -> str | None:
    """The tenant whose API key (scope ``sessions:create`` or ``admin``) is the bearer, if one is.

    ``None`` when the bearer is no API key (a session token, say); a key without either scope
    is 403. Used where a session's own token and its tenant's key are both accepted.
    """
    tenants: Tenants = connection.app.state.tenants
    token = bearer_token(connection.headers.get("authorization"))
    key = tenants.find(token) if token is not None else None
    if key is None:
        return None
    if not (key.allows(CREATE) or key.allows(ADMIN)):
        raise Forbidden(f"this API key may not manage sessions (scope {CREATE} or {ADMIN})")
    return key.tenant.name


def require_admin(connection: _Connection, _: BaseRouteHandler) -> None:
    """Allow the ``ADMIN_TOKEN`` (every tenant) or an API key with scope ``admin`` (its tenant)."""
    token = bearer_token(connection.headers.get("authorization"))
    if token is None:
        raise Unauthorized("missing admin credential (Authorization: Bearer <ADMIN_TOKEN>)")
    connection.state[_ADMIN_TENANT] = admin_of(connection, token)


def admin_of(connection: _Connection, token: str) -> str | None:
    """The tenant ``token`` administers (``None``: every tenant, the ``ADMIN_TOKEN``), or 401/403.

    The bearer token of ``/admin`` and the console's cookie are checked here alike.
    """
    settings: Settings = connection.app.state.settings
    tenants: Tenants = connection.app.state.tenants
    if same_secret(token, settings.admin_token):
        return None
    key = tenants.find(token)
    if key is None:
        raise Unauthorized("wrong admin token")
    if not key.allows(ADMIN):
        raise Forbidden(f"this API key may not administer (scope {ADMIN})")
    return key.tenant.name


def admin_tenant(connection: _Connection) -> str | None:
    """The tenant an admin request is limited to; ``None`` for the deployment's ADMIN_TOKEN."""
    tenant: str | None = connection.state[_ADMIN_TENANT]
    return tenant


def require_deployment_admin(connection: _Connection, _: BaseRouteHandler) -> None:
    """After ``require_admin``: only the ``ADMIN_TOKEN``, for what concerns every tenant."""
    if admin_tenant(connection) is not None:
        raise Forbidden("only the deployment's ADMIN_TOKEN may do this")
