"""The processor routes only the manager calls: never forwarded for a session's token holder.

A processor trusts whatever carries its secret, and the proxy adds that secret to every request
it forwards; so a route meant for the manager alone (the hibernation fence, a warm-pool claim,
the v3 knowledge sharing calls) must be refused before anything is forwarded, else a client
could fence its own processor or feed it another session's knowledge. The manager's own calls
through the proxy's path (``v3.facade``) say so and are let through.
"""

from __future__ import annotations

import posixpath
from urllib.parse import unquote

__all__ = ("MANAGER_ONLY_PATHS", "is_manager_only")

MANAGER_ONLY_PATHS = frozenset({"/fence", "/claim", "/knowledge/sync", "/knowledge/reload"})
"""Every route of ``processor_image/service`` that the manager calls and a client may not."""


def is_manager_only(path: str) -> bool:
    """Whether a proxied path (still percent-encoded) reaches a manager-only route.

    Compared as the processor routes it: decoded once, dot segments, doubled and trailing
    slashes folded. Anything below such a route is refused too.
    """
    if "%" in path:
        path = unquote(path)
    # The hot path: three substring scans, no generator (every proxied request comes here).
    if "fence" not in path and "claim" not in path and "knowledge" not in path:
        return False
    normal = "/" + posixpath.normpath("/" + path).lstrip("/")
    return any(normal == route or normal.startswith(route + "/") for route in MANAGER_ONLY_PATHS)
