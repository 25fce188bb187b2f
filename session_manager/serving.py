"""The uvicorn configuration the manager is served with, built in one place.

``python -m session_manager`` and the in-process test fixture both call ``server_config``, so
tests exercise the same edge (header size, count and time limits, keep-alive timeout, no access
log) as a deployment does.
"""

from __future__ import annotations

from typing import Any

import uvicorn

from session_manager.edge import EdgeLimits, edge_protocol
from session_manager.settings import Settings

__all__ = ("server_config",)


def server_config(app: Any, settings: Settings) -> uvicorn.Config:
    """The uvicorn ``Config`` for ``app`` under ``settings``; logging is left to ``log.py``."""
    return uvicorn.Config(
        app,
        host=settings.listen_host,
        port=settings.listen_port,
        log_level=settings.log_level.lower(),
        ws="websockets-sansio",
        http=edge_protocol(
            EdgeLimits(
                max_header_bytes=settings.max_header_bytes,
                max_headers=settings.max_headers,
                header_timeout_s=settings.header_timeout_s,
            )
        ),
        timeout_keep_alive=settings.keepalive_timeout_s,
        lifespan="on",
        access_log=False,
        log_config=None,
    )
