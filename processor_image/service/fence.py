"""The hibernation fence: once it is up, this processor's state can change no more.

The manager hibernates a session by ``POST /fence``, then ``GET /state``, then stopping the
processor. The fence is what makes that snapshot exact (a barrier, not a guess):

- ``FencedLock`` is the processor lock with the fence at its door. ``POST /fence`` takes the
  lock, so every request admitted before it (holding or queued on the lock: asyncio's lock is
  first come, first served) has finished; any later entry raises ``ProcessorFenced`` (503
  ``PROCESSOR_FENCED``), which the manager answers by waiting for the restored processor and
  resending. ``GET /state`` and the fence routes pass with ``past_fence()``; ``GET /health``
  takes no lock.
- ``OpenSockets`` knows every open ``/ws``: the fence closes each with 1012 ("service
  restart", reason ``session hibernating``) once the frame it is handling (if any) has been
  answered. A frame that arrives later is not processed and gets no reply.
- ``DELETE /fence`` lifts it, for a hibernation that failed after fencing (the session stays
  ``ready`` on this processor).

These two routes are the manager's, beyond the reference API.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from litestar import WebSocket, delete, post
from litestar.datastructures import State
from litestar.exceptions import WebSocketDisconnect

from processor_image.service.errors import ErrorShapedOperation, ProcessorFenced
from processor_image.service.schemas import FenceResponse

if TYPE_CHECKING:
    from types import TracebackType

    from processor_image.service.runtime import Runtime

__all__ = ("FENCE_CLOSE", "FENCE_ROUTES", "FencedLock", "OpenSockets", "SocketLink")

FENCE_CLOSE = (1012, "session hibernating")
"""Close code and reason of a WebSocket the fence ends (1012: service restart, RFC 6455 §7.4)."""

_CLOSE_WAIT_S = 5.0
"""How long the fence waits for frames in hand to be answered and close frames to go out."""


class FencedLock:
    """The processor lock; entering it once the fence is up raises ``ProcessorFenced``."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self.fenced = False

    async def __aenter__(self) -> None:
        await self._lock.acquire()
        if self.fenced:
            self._lock.release()
            raise ProcessorFenced

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._lock.release()

    def past_fence(self) -> asyncio.Lock:
        """The bare lock, for the reads allowed while fenced (``GET /state``) and the fence."""
        return self._lock


class SocketLink:
    """One open ``/ws``: ``busy`` is held while a frame is handled and answered."""

    __slots__ = ("busy", "closed", "socket")

    def __init__(self, socket: WebSocket[Any, Any, Any]) -> None:
        self.socket = socket
        self.busy = asyncio.Lock()
        self.closed = False

    async def close(self, code: int, reason: str) -> None:
        """Send the close frame once; a socket the client already left is fine."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await self.socket.close(code, reason)


class OpenSockets:
    """Every open ``/ws`` of this processor, so the fence can close them."""

    def __init__(self) -> None:
        self._links: set[SocketLink] = set()

    @contextlib.contextmanager
    def open(self, socket: WebSocket[Any, Any, Any]) -> Iterator[SocketLink]:
        """Register an accepted socket for as long as its handler runs."""
        link = SocketLink(socket)
        self._links.add(link)
        try:
            yield link
        finally:
            self._links.discard(link)

    async def close_all(self, code: int, reason: str) -> int:
        """Close every open socket once its frame in hand is answered; how many there were."""
        links = list(self._links)

        async def close(link: SocketLink) -> None:
            async with link.busy:
                await link.close(code, reason)

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_CLOSE_WAIT_S):
                await asyncio.gather(*(close(link) for link in links))
        return len(links)


@post("/fence", status_code=200, summary="Fence the processor before hibernation (manager)")
async def fence(state: State) -> FenceResponse:
    """Stop changing state: later requests answer 503 ``PROCESSOR_FENCED``, sockets close 1012.

    Answers once every request admitted before it has finished and every open WebSocket has
    been closed, so a ``GET /state`` after it is the processor's final state. Idempotent.
    """
    runtime: Runtime = state.runtime
    async with runtime.lock.past_fence():
        runtime.lock.fenced = True
    closed = await runtime.sockets.close_all(*FENCE_CLOSE)
    return FenceResponse(fenced=True, closed_websockets=closed, processor_id=runtime.processor_id)


@delete("/fence", status_code=200, summary="Lift the fence (manager; hibernation failed)")
async def unfence(state: State) -> FenceResponse:
    """Serve requests again: the hibernation that fenced this processor did not happen."""
    runtime: Runtime = state.runtime
    async with runtime.lock.past_fence():
        runtime.lock.fenced = False
    return FenceResponse(fenced=False, closed_websockets=0, processor_id=runtime.processor_id)


FENCE_ROUTES = (fence, unfence)
for _handler in FENCE_ROUTES:
    _handler.operation_class = ErrorShapedOperation
