"""Every Redis key the manager uses, spelled here and nowhere else (Lua scripts included).

Keys, under the prefix (default ``kato:``):

* ``session:{id}``: hash, the record (``SessionRecord`` fields, genes/labels as JSON, ``ix``)
* ``deadline:idle`` / ``deadline:hard``: zsets, session id -> deadline ms
* ``starts``: zset, session id -> start deadline ms (the concurrent-start limit)
* ``starts:queue``: zset, session id -> arrival ms of restores and recoveries waiting for a
  start slot (served oldest first); ``starts:waiters``: zset, the same ids -> their waiter's
  lease expiry ms (a waiter whose manager died drops out when it expires)
* ``user:{tenant}:{user_id}``: set of that tenant's user's session ids (the per-user limit;
  tenant names hold no ``:``, so two tenants' users never share a set)
* ``tenant:{tenant}``: zset of the tenant's sessions (index members, score 0): the tenant's
  ``max_sessions`` quota and its admin listing
* ``kb:{kb_id}``: who owns a knowledge base: the tenant that first used it, or
  ``"{tenant} {session_id}"`` for a session's private one (expires with its tombstone)
* ``sessions``, ``status:{status}``, ``label:{k}={v}``: listing indexes; zsets with score 0
  whose members (``codec.index_member``) sort by creation time
* ``tombstone:{id}``: JSON ``Tombstone`` with a TTL; ``snapshot:{id}``: hibernated state
  (zstd-compressed ``GET /state``); ``snapshots:totals``: hash ``count``, ``bytes`` of them all
* ``leader:reaper``: the reaper lease, ``SET NX PX``
* ``replicas``: zset, manager instance id -> its last heartbeat (Redis time, ms); a stopping
  manager acts on sessions only when no other live instance is left in it
* ``journal:{id}``: zset, the session's acknowledged mutating requests since its checkpoint,
  scored by the processor's sequence number (``store.journal``)
* ``checkpointing:{id}``: string with PX TTL, held while a checkpoint or hibernation snapshot is
  taken, saved and the journal trimmed (one at a time per session)
* ``changes``: pub/sub channel; every status change, end and token rotation publishes the
  session id
* ``deployment``: this deployment's id, generated once (``SET NX``); it marks its processors
* ``processor-key``: the key processors' secrets are derived from, generated once (``SET NX``)
* ``v3:session:{id}``: JSON ``V3Record`` of a KATO v3 API session (``store.v3``);
  ``v3:deadline``: zset, v3 session id -> its v3 deadline ms (TTL, extend; the v3 count);
  ``v3:node:{kb_id}``: the node's knowledge generation, incremented by every learn or clear
  (MongoDB); ``v3:node:{kb_id}:log``: list, the node's knowledge changes (memory stores)
* ``pool-bindings``: hash, warm-pool container's pool id -> the session it was handed to
  (``store.bindings``: a container's labels cannot change once it runs)

Lua scripts receive these as full names in ``KEYS`` (or ``ARGV`` for keys that depend on the
record, such as a label index); no script builds a key from a prefix.
"""

from __future__ import annotations

from collections.abc import Mapping

from session_manager.models import SessionStatus

__all__ = ("Keys",)


class Keys:
    """The key names under one prefix; one instance per store."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.sessions = f"{prefix}sessions"
        self.idle = f"{prefix}deadline:idle"
        self.hard = f"{prefix}deadline:hard"
        self.starts = f"{prefix}starts"
        self.start_queue = f"{prefix}starts:queue"
        self.start_waiters = f"{prefix}starts:waiters"
        self.changes = f"{prefix}changes"
        self.leader = f"{prefix}leader:reaper"
        self.replicas = f"{prefix}replicas"
        self.snapshot_totals = f"{prefix}snapshots:totals"
        self.deployment = f"{prefix}deployment"
        self.processor_key = f"{prefix}processor-key"
        self.v3_deadlines = f"{prefix}v3:deadline"
        self.pool_bindings = f"{prefix}pool-bindings"

    def session(self, session_id: str) -> str:
        """The hash holding the session's record."""
        return f"{self.prefix}session:{session_id}"

    def user(self, tenant: str, user_id: str) -> str:
        """The set of the tenant's user's session ids."""
        return f"{self.prefix}user:{tenant}:{user_id}"

    def tenant(self, tenant: str) -> str:
        """The listing index of the tenant's sessions (its session count, too)."""
        return f"{self.prefix}tenant:{tenant}"

    def knowledge_base(self, kb_id: str) -> str:
        """Who owns the knowledge base ``kb_id``."""
        return f"{self.prefix}kb:{kb_id}"

    def status(self, status: SessionStatus) -> str:
        """The listing index of sessions in ``status``."""
        return f"{self.prefix}status:{status}"

    def all_statuses(self) -> list[str]:
        """Every status index, in ``SessionStatus`` order."""
        return [self.status(status) for status in SessionStatus]

    def label(self, key: str, value: str) -> str:
        """The listing index of sessions labelled ``key=value``."""
        return f"{self.prefix}label:{key}={value}"

    def labels(self, labels: Mapping[str, str]) -> list[str]:
        """The label indexes a session with ``labels`` is listed in."""
        return [self.label(key, value) for key, value in labels.items()]

    def tombstone(self, session_id: str) -> str:
        """Why an ended session ended, while its TTL runs."""
        return f"{self.prefix}tombstone:{session_id}"

    def snapshot(self, session_id: str) -> str:
        """A hibernated session's processor state."""
        return f"{self.prefix}snapshot:{session_id}"

    def journal(self, session_id: str) -> str:
        """The session's journal of acknowledged mutating requests, scored by sequence number."""
        return f"{self.prefix}journal:{session_id}"

    def v3_session(self, session_id: str) -> str:
        """A v3 API session's own fields (node, TTL, configuration, metadata)."""
        return f"{self.prefix}v3:session:{session_id}"

    def v3_node(self, kb_id: str) -> str:
        """The knowledge generation of the v3 node whose knowledge base is ``kb_id``."""
        return f"{self.prefix}v3:node:{kb_id}"

    def v3_node_log(self, kb_id: str) -> str:
        """The node's knowledge changes, in order (memory stores share knowledge through it)."""
        return f"{self.prefix}v3:node:{kb_id}:log"

    def checkpointing(self, session_id: str) -> str:
        """The lock held while the session's snapshot is taken, saved and its journal trimmed."""
        return f"{self.prefix}checkpointing:{session_id}"
