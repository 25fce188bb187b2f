"""The session store: everything the manager keeps in Redis, and the only code that spells a key.

Modules, one job each:

* ``keys``: every key name (``Keys``); Lua scripts receive full names, never a prefix
* ``codec``: record <-> hash, index members, opaque listing cursors, script arguments
* ``boundary``: ``translate_redis_errors``, where Redis failures become ``StoreUnavailable``
* ``scripts``: loads ``lua/*.lua`` through ``importlib.resources``, registers them per client
* ``writes``: reserve, transition, end, touch (each one script, so indexes never disagree)
* ``records``: the reads a request makes (record, route, tombstone)
* ``sweeps``: the reaper's and reconciler's reads (due deadlines, expired starts, by status)
* ``snapshots``: ``SnapshotStore``, where processor states live (Redis today; the seam for a
  blob store or GridFS); ``lease``: the reaper's leader lease
* ``replicas``: the live manager instances (heartbeats), so only the last one to stop acts
* ``listing``: admin counts and cursor pages; ``feed``: the change feed (pub/sub)
* ``deployment``: the deployment id (marks its processors); ``tokens``: token rotation
* ``bindings``: which session each claimed warm-pool container serves (docker, swarm)
* ``sessions``: ``SessionStore``, the one object callers hold, handing each call on
"""

from __future__ import annotations

from session_manager.store.codec import Deadline, decode_cursor, encode_cursor
from session_manager.store.keys import Keys
from session_manager.store.listing import Page
from session_manager.store.records import Route
from session_manager.store.sessions import SessionStore
from session_manager.store.snapshots import RedisSnapshots, SnapshotStore, SnapshotTotals
from session_manager.store.writes import Capacity, TransitionResult

__all__ = (
    "Capacity",
    "Deadline",
    "Keys",
    "Page",
    "RedisSnapshots",
    "Route",
    "SessionStore",
    "SnapshotStore",
    "SnapshotTotals",
    "TransitionResult",
    "decode_cursor",
    "encode_cursor",
)
