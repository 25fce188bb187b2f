"""The one processor a service hosts, with the lock that makes its operations sequential.

On a store that waits on a database (MongoDB) the engine's calls run on one worker thread (the
*lane*), so a slow database holds the request that waits for it, not the event loop: ``/health``
and every request queued on the lock keep being read and answered. Requests still run one at a
time and in arrival order: the lock admits them first come, first served, and a request hands
its engine call to the lane and awaits it while holding the lock. On the memory store (no I/O)
the calls stay on the loop, which is cheaper than a thread hop.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from processor_image.engine import ObserveResult, Processor
from processor_image.service.config import ServiceConfig
from processor_image.service.fence import FencedLock, OpenSockets
from processor_image.service.schemas import ObserveRequest, ObserveResponse
from processor_image.storage import open_knowledge_base
from processor_image.storage.ops import OpClock

__all__ = (
    "REPLAY_SEQ_HEADER",
    "SEQ_HEADER",
    "STATE_SEQ_HEADER",
    "UNIQUE_ID_HEADER",
    "Runtime",
    "generated_unique_id",
)

_P = ParamSpec("_P")
_T = TypeVar("_T")

SEQ_HEADER = "X-Kato-Seq"
"""On every mutating reply: the sequence number the request got (the manager journals by it)."""
STATE_SEQ_HEADER = "X-Kato-State-Seq"
"""On a ``GET /state`` reply: the snapshot's ``seq``, so the manager need not open the snapshot
(a zstd frame of up to ``MAX_STATE_BYTES``) to learn its checkpoint's position. Not
``X-Kato-Seq``: a read changes nothing and must not look journaled."""
REPLAY_SEQ_HEADER = "X-Kato-Replay-Seq"
"""On a request the manager replays after a crash: the sequence number it had the first time."""
UNIQUE_ID_HEADER = "X-Kato-Unique-Id"
"""On an ``/observe`` from the manager: the id to give the observation when its body names
none (the manager journaled the request with it before the answer). The reply repeats the
header with the id used, so the manager knows it was honoured."""


def generated_unique_id(prefix: str) -> str:
    """An id for an observation that came without one (spec §2.1)."""
    return f"{prefix}-{uuid.uuid4().hex}-{int(time.time() * 1_000_000)}"


class Runtime:
    """Processor + lock + uptime; every state-changing call goes through ``lock``.

    ``lock`` carries the hibernation fence (``service.fence``): once it is up, entering raises
    ``ProcessorFenced``. ``sockets`` are the open ``/ws`` the fence closes.
    """

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.started = time.monotonic()
        self.lock = FencedLock()
        self.sockets = OpenSockets()
        self.seq = 0
        """Mutating requests applied (HTTP and WebSocket); snapshots carry it (``state.seq``)."""
        self.ops = OpClock(config.processor_id)
        """The request being applied, for a shared knowledge base to apply a replay once."""
        kb = open_knowledge_base(
            config.storage,
            config.kb_id,
            config.mongo_url,
            self.ops,
            predictions_history=config.predictions_history,
            predictions_ttl_s=config.predictions_ttl_s,
        )
        self.processor = Processor(
            processor_id=config.processor_id,
            name=config.processor_name,
            kb=kb,
            genes=config.genes,
            kb_id=config.kb_id,
            core=config.engine_core,
            share=config.knowledge_outbox,
        )
        self._lane = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine-lane")
            if kb.persistent
            else None
        )

    async def run(self, call: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """``call(*args, **kwargs)``: engine work that may wait on the store; the lock is held.

        On the lane when the store is a database, else inline. A request cancelled meanwhile
        (server shutdown) still waits for its call to end before the lock is released, so the
        engine never runs two calls at once.
        """
        if self._lane is None:
            return call(*args, **kwargs)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._lane, functools.partial(call, *args, **kwargs))
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            while not future.done():
                try:
                    await asyncio.wait({future})
                except asyncio.CancelledError:
                    continue
            raise

    @property
    def processor_id(self) -> str:
        """This processor's id."""
        return self.config.processor_id

    def uptime(self) -> float:
        """Seconds since the service started."""
        return time.monotonic() - self.started

    def begin(self, replay_seq: str | None = None) -> None:
        """Tell the knowledge base which request the next writes belong to; lock held.

        Called before the engine runs a request that may write knowledge (observe, learn):
        the seq ``applied`` will give it, and whether it is a replay (``X-Kato-Replay-Seq``).
        """
        replay = replay_seq is not None and replay_seq.isdigit()
        # A replay's knowledge changes were drained for sharing the first time round.
        self.processor.share_paused = replay
        if replay_seq is not None and replay:
            self.ops.begin(int(replay_seq), replay=True)
        else:
            self.ops.begin(self.seq + 1, replay=False)

    def applied(self, replay_seq: str | None = None) -> int:
        """Count one applied mutating request and return its sequence number; lock held.

        A replayed request (``X-Kato-Replay-Seq``) takes the number it had the first time, so
        the numbering after a recovery goes on where the crashed processor's left off.
        """
        if replay_seq is not None and replay_seq.isdigit():
            self.seq = int(replay_seq)
        else:
            self.seq += 1
        return self.seq

    def observe(self, request: ObserveRequest, offered_id: str | None = None) -> ObserveResponse:
        """One HTTP observation; the caller holds the lock (and runs it through ``run``).

        ``offered_id`` (``X-Kato-Unique-Id``) is used when the request names no ``unique_id``.
        """
        unique_id = request.unique_id or offered_id or generated_unique_id("obs")
        result = self.processor.observe(
            request.strings, request.vectors, request.emotives, unique_id
        )
        return self.observe_response(result)

    def observe_response(self, result: ObserveResult) -> ObserveResponse:
        """The spec's observe reply for an engine result."""
        return ObserveResponse(
            status="okay",
            processor_id=self.processor_id,
            auto_learned_pattern=result.auto_learned_pattern,
            time=result.time,
            unique_id=result.unique_id,
        )

    def close(self) -> None:
        """Stop the lane (after the call it runs, if any), then release the store's connections."""
        if self._lane is not None:
            self._lane.shutdown(wait=True)
        self.processor.kb.close()
