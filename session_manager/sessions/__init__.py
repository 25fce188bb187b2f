"""Sessions: their state machine, routing, tokens and processor specs; ``Sessions`` is the façade.

facade.py       Sessions: what the API, reaper and reconciler call; delegates to the rest
lifecycle.py    create, start, end; every status change is a compare-and-set in Redis
hibernation.py  hibernate, restore, recover (snapshots through the processor's /state)
routing.py      resolve: static routes (gateway mode) first, then a cached or stored route
records.py      a record for a request, or the 404/410 its absence means
tokens.py       session tokens: issue, hash, read from Authorization, compare (admin too)
specs.py        the ProcessorSpec a backend starts for a session
"""

from __future__ import annotations

from session_manager.sessions.facade import Sessions
from session_manager.sessions.lifecycle import NewSession
from session_manager.sessions.routing import ProcessorRoute, StaticRoutes
from session_manager.sessions.tokens import hash_token

__all__ = ("NewSession", "ProcessorRoute", "Sessions", "StaticRoutes", "hash_token")
