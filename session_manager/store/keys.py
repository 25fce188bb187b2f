"""Every Redis key the manager uses, spelled here and nowhere else (Lua scripts included).

Keys, under the prefix (default ``kato:``):

* ``session:{id}``: hash, the record (``SessionRecord`` fields, genes/labels as JSON, ``ix``)
* ``deadline:idle`` / ``deadline:hard``: zsets, session id -> deadline ms
* ``starts``: zset, session id -> start deadline ms (the concurrent-start limit)
* ``user:{user_id}``: set of that user's session ids (the per-user limit)
* ``sessions``, ``status:{status}``, ``label:{k}={v}``: listing indexes; zsets with score 0
  whose members (``codec.index_member``) sort by creation time
* ``tombstone:{id}``: JSON ``Tombstone`` with a TTL; ``snapshot:{id}``: hibernated state
* ``leader:reaper``: the reaper lease, ``SET NX PX``
* ``changes``: pub/sub channel; every status change, end and token rotation publishes the
  session id
* ``deployment``: this deployment's id, generated once (``SET NX``); it marks its processors

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
        self.changes = f"{prefix}changes"
        self.leader = f"{prefix}leader:reaper"
        self.deployment = f"{prefix}deployment"

    def session(self, session_id: str) -> str:
        """The hash holding the session's record."""
        return f"{self.prefix}session:{session_id}"

    def user(self, user_id: str) -> str:
        """The set of the user's session ids."""
        return f"{self.prefix}user:{user_id}"

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
