"""Which request a knowledge-base write belongs to, so a shared store can apply it once.

A processor numbers its mutating requests (``Runtime.seq``); after a crash the manager replays
journaled requests with the numbers they had (``X-Kato-Replay-Seq``). A store that outlives the
processor (MongoDB) already holds the effects of those requests, so it tags every document it
writes with the highest op applied to it and skips a replayed write at or below that tag. A
destructive write (``clear-all``) is an op too: the store keeps every processor's highest op
across it, so a replay neither repeats the clear nor brings back what it removed.

The runtime sets the request before handing it to the engine; the engine never sees this.
"""

from __future__ import annotations

__all__ = ("STEPS_PER_REQUEST", "OpClock")

STEPS_PER_REQUEST = 1_000_000
"""Writes one request may make (an ``/observe-sequence`` auto-learns many times) before op
numbers of consecutive requests would overlap; far above any request body the service accepts."""


class OpClock:
    """The request being applied (its seq, whether it is a replay) and the op of each write.

    An op number is ``seq * STEPS_PER_REQUEST + step``, ``step`` counting the writes of the
    request from 1: the engine is deterministic, so a replayed request makes the same writes in
    the same order and each one gets the op number it had the first time.
    """

    def __init__(self, owner: str) -> None:
        self.owner = owner
        """Who applies the ops (the processor id, stable across restarts of a session)."""
        self.seq = 0
        self.replay = False
        self._step = 0

    def begin(self, seq: int, *, replay: bool) -> None:
        """A new request: the writes that follow belong to ``seq``."""
        self.seq = seq
        self.replay = replay
        self._step = 0

    @property
    def first_op(self) -> int:
        """The lowest op number any write of the current request can have (its ``seq`` base).

        A mark at or above it means this request, or a later one, was applied already.
        """
        return self.seq * STEPS_PER_REQUEST

    def next_op(self) -> int:
        """The op number of the next write of the current request."""
        self._step += 1
        return self.seq * STEPS_PER_REQUEST + self._step
