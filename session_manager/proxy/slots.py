"""Fair sharing of the proxy's upstream connections between processors (issue 13, finding 6).

The pool lets ``PROXY_MAX_CONNECTIONS`` requests be on the wire at once. First come, first
served, whoever asks most took them all: one user's clients that never read their (streamed)
responses held every slot, and every other session's requests waited for the read timeout,
then got ``504``. ``FairSlots`` hands slots out under three rules:

* **per-owner cap**: an owner (a processor: one session's own, or a shared static one) holds at
  most ``per_owner`` slots (``PROXY_MAX_IN_FLIGHT_PER_SESSION``); more wait;
* **reserve**: the last quarter of the slots goes only to owners that hold fewer than
  ``LIGHT_BELOW`` slots. However many sessions one user floods (20 per user by default, each
  held to ``LIGHT_BELOW`` in the reserve: 40 of 128 reserved slots with the defaults), a
  session making a request or two at a time still finds a slot at once;
* **round robin**: a freed slot goes to the next waiting owner in turn that may take it, not to
  whoever queued most.

A wait ends after ``timeout_s`` with ``ProcessorTimeout`` (``504``).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Hashable

from session_manager.errors import ProcessorTimeout

__all__ = ("LIGHT_BELOW", "FairSlots")

LIGHT_BELOW = 2
"""Owners holding fewer slots than this may still take one from the reserve."""


class FairSlots:
    """Counting slots per owner, with a reserve for light owners and round-robin waiting.

    Invariant: no waiting owner may take a slot (every release hands slots to waiters first),
    so a newcomer that may take one takes it without queueing behind them.
    """

    def __init__(self, capacity: int, per_owner: int) -> None:
        self.capacity = capacity
        self.per_owner = min(per_owner, capacity)
        self._open_below = capacity - capacity // 4
        """Below this many slots in use, any owner under its cap takes one; above, only light
        owners (the reserve)."""
        self.in_use = 0
        self._held: dict[Hashable, int] = {}
        self._waiting: OrderedDict[Hashable, deque[asyncio.Future[None]]] = OrderedDict()

    def held(self, owner: Hashable) -> int:
        """Slots ``owner`` holds now."""
        return self._held.get(owner, 0)

    def _may_take(self, held: int) -> bool:
        if self.in_use >= self.capacity or held >= self.per_owner:
            return False
        return self.in_use < self._open_below or held < LIGHT_BELOW

    def _take(self, owner: Hashable, held: int) -> None:
        self.in_use += 1
        self._held[owner] = held + 1

    def take_now(self, owner: Hashable) -> bool:
        """Take a slot for ``owner`` if one is free for it now (nobody else waiting for one)."""
        held = self._held.get(owner, 0)
        if self._waiting or not self._may_take(held):
            return False
        self._take(owner, held)
        return True

    async def acquire(self, owner: Hashable, timeout_s: float) -> None:
        """Take a slot for ``owner``, waiting up to ``timeout_s`` for one it may take."""
        held = self._held.get(owner, 0)
        if self._may_take(held):
            self._take(owner, held)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(owner, deque()).append(waiter)
        try:
            async with asyncio.timeout(timeout_s):
                await waiter
        except TimeoutError as exc:
            self._give_back_or_forget(owner, waiter)
            raise ProcessorTimeout("too many requests in flight to processors") from exc
        except BaseException:
            self._give_back_or_forget(owner, waiter)
            raise

    def _give_back_or_forget(self, owner: Hashable, waiter: asyncio.Future[None]) -> None:
        """A wait that ended early: return a slot granted meanwhile, else leave the queue."""
        if waiter.done() and not waiter.cancelled():
            self.release(owner)
            return
        waiter.cancel()
        queue = self._waiting.get(owner)
        if queue is not None:
            if waiter in queue:
                queue.remove(waiter)
            if not queue:
                del self._waiting[owner]

    def release(self, owner: Hashable) -> None:
        """Give ``owner``'s slot back; waiters that may now take one get it, in turn."""
        self.in_use -= 1
        left = self._held[owner] - 1
        if left:
            self._held[owner] = left
        else:
            del self._held[owner]
        if self._waiting:
            self._hand_out()

    def _hand_out(self) -> None:
        """Round robin over waiting owners: one slot each per pass, until none may take one."""
        granted = True
        while granted and self._waiting and self.in_use < self.capacity:
            granted = False
            for owner in list(self._waiting):
                queue = self._waiting[owner]
                held = self._held.get(owner, 0)
                while queue and queue[0].done():  # cancelled waiters not yet removed
                    queue.popleft()
                if queue and self._may_take(held):
                    self._take(owner, held)
                    queue.popleft().set_result(None)
                    granted = True
                    self._waiting.move_to_end(owner)
                if not queue:
                    del self._waiting[owner]
