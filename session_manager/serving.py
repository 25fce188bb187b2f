"""The uvicorn configuration the manager is served with, built in one place.

``python -m session_manager`` and the in-process test fixture both call ``server_config``, so
tests exercise the same edge (header size, count and time limits, the write timeout towards
slow readers, keep-alive timeout, no access log) as a deployment does. It also puts
``RedactSecrets`` on uvicorn's own loggers, whose lines quote request targets
(``"WebSocket /session/<id>/ws?token=…" [accepted]``): redacted where they are made, they stay
so whatever handler writes them (``log.configure_logging``'s, a test runner's, an embedding
application's).
"""

from __future__ import annotations

import logging
from typing import Any

import uvicorn

from session_manager.edge import EdgeLimits, edge_protocol, edge_websocket_protocol
from session_manager.log import RedactSecrets
from session_manager.settings import Settings

__all__ = ("server_config",)

_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def server_config(app: Any, settings: Settings) -> uvicorn.Config:
    """The uvicorn ``Config`` for ``app`` under ``settings``; handlers are left to ``log.py``."""
    for name in _UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())
    limits = EdgeLimits(
        max_header_bytes=settings.max_header_bytes,
        max_headers=settings.max_headers,
        header_timeout_s=settings.header_timeout_s,
        write_timeout_s=settings.client_write_timeout_s,
    )
    return uvicorn.Config(
        app,
        host=settings.listen_host,
        port=settings.listen_port,
        log_level=settings.log_level.lower(),
        ws=edge_websocket_protocol(limits),
        http=edge_protocol(limits, getattr(getattr(app, "state", None), "proxy_lane", None)),
        timeout_keep_alive=settings.keepalive_timeout_s,
        lifespan="on",
        access_log=False,
        log_config=None,
    )
