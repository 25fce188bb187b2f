"""Python client for kato-sessions: sync (``Client``) and asyncio (``AsyncClient``), on httpx.

A ``Session`` (``AsyncSession``) has one typed method per processor endpoint, plus keepalive,
token rotation and delete (on leaving its ``with`` block). Calls wait through ``429``/``503``
answers that carry ``Retry-After`` (``Retry``); errors are raised as ``KatoError`` subclasses
carrying the service's error ``code``. The ``kato-sessions`` command line is ``cli``.
"""

from kato_sessions._calls import DEFAULT_URL, ENV_TOKEN, ENV_URL, Retry
from kato_sessions.aio import AsyncClient, AsyncSession
from kato_sessions.errors import *  # noqa: F403 (the exception hierarchy is part of the API)
from kato_sessions.errors import __all__ as _errors
from kato_sessions.models import *  # noqa: F403 (the reply types are part of the API)
from kato_sessions.models import __all__ as _models
from kato_sessions.sync import Client, Session
from kato_sessions.ws import SessionSocket

__all__ = (
    "DEFAULT_URL",
    "ENV_TOKEN",
    "ENV_URL",
    "AsyncClient",
    "AsyncSession",
    "Client",
    "Retry",
    "Session",
    "SessionSocket",
    *_errors,
    *_models,
)
