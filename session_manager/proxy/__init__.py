"""The reverse proxy's machinery, under the thin handlers in ``api/proxy.py``.

- ``http1``: the keep-alive HTTP/1.1 pool on httptools (the hot path);
- ``slots``: ``FairSlots``, how that pool shares its requests in flight between processors;
- ``http``: ``Forwarder``: one request to a processor and its ``ProxyResponse``, hop-by-hop
  filtering, request-body caps;
- ``websocket``: open the processor's ``/ws``, bridge frames, map close codes;
- ``activity``: ``ActivityTracker``, the only throttle on idle-deadline touches.

The request id the proxy passes on comes from ``session_manager.log.request_id_from``.
"""

from session_manager.proxy.activity import ActivityTracker, Touch
from session_manager.proxy.http import READS, Forwarder, ProxyResponse
from session_manager.proxy.http1 import Http1Pool
from session_manager.proxy.websocket import (
    Closed,
    WebSocketConnector,
    bridge_websockets,
    websocket_close_code,
)

__all__ = (
    "READS",
    "ActivityTracker",
    "Closed",
    "Forwarder",
    "Http1Pool",
    "ProxyResponse",
    "Touch",
    "WebSocketConnector",
    "bridge_websockets",
    "websocket_close_code",
)
