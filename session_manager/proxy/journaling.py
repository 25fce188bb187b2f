"""What the proxy journals: an applied mutating request, as the processor applied it.

The processor marks every request that changed its state with ``X-Kato-Seq`` (its sequence
number). Before that reply goes to the client, the request is in the session's journal
(``store.journal``); if Redis cannot keep it the client gets 503 ``STORE_UNAVAILABLE`` instead:
the write was not acknowledged. Observations sent without a ``unique_id`` are journaled with
the id they got, so a replay is exact. A WebSocket message is journaled as ``POST /message``
with its frame, which the processor answers exactly as ``/ws`` does.

Two ways to journal a request, chosen per request (``RequestJournal.begin``):

* **Ahead** (the common case: one client writing to its session). The manager knows the
  session's last sequence number (from the previous answer) and no other write of the session
  is in flight, no WebSocket open: the processor will number this request ``last + 1``. The
  entry is written under that number as the request is forwarded (right after its bytes, so
  the processor starts first), on ``JournalPipe``'s connection and without waiting; the Redis
  round trip runs while the processor works. An
  ``/observe`` is offered an id (``X-Kato-Unique-Id``) which the processor uses when the body
  names none and confirms in its reply; the entry carries it, a replay offers it again. The
  client's answer waits for both: the processor's reply confirming the number (and the id),
  and Redis's acknowledgement of the entry. Anything else voids or corrects the entry before
  the client hears back: a reply under another number (another writer got in between) is
  journaled under the number it got, replacing the entry; a reply without a number (refused,
  fenced, not applied) and every failure without a definite answer (reset, timeout, processor
  gone, the request cancelled) remove the entry (``void``) before the error is answered or the
  request resent, so replay never applies a request twice or one that was not applied.
* **After** (the first write the manager sees for a session, concurrent writes, writes while a
  WebSocket is open, ``/observe-sequence``, ``PUT /state``): the request is forwarded, and its
  entry appended under the number in the reply before the client hears back (one Redis round
  trip after the processor's).

An entry written ahead sits in Redis while its request is in flight, so a restart that reads
the journal (crash recovery, restore) first waits for the session's requests in flight to be
settled (``settled``), else it could replay a request that is then voided and resent. A stale
expectation is caught by Redis (``journal_ahead.lua`` writes nothing over an existing entry)
and by the reply's number; an entry appended under a number replaces anything written ahead
under it (``journal_append.lua``).

Assumption: one manager forwards a session's writes (the expectation is this process's).
With two replicas writing one session (issue 18) the numbers still decide: a replica's stale
expectation is refused by Redis or contradicted by the reply and the entry corrected; what is
not covered is a replica's restart reading the journal while another replica's entry written
ahead is still unsettled.

The fence: every write carries the session's epoch its route was read at, and both scripts
(ahead and after) write nothing when the session's epoch moved on since (a restore or recovery
replaced the processor). That answer came from a replaced processor: ``RouteStale``, not
acknowledged, and the proxy resends the request to the current one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec

from session_manager.errors import KatoError, RouteStale, StoreUnavailable
from session_manager.ids import random_hex
from session_manager.store.journal import STALE, Journal, JournalEntry

__all__ = (
    "JOURNAL_HEADER",
    "SEQ_HEADER",
    "UNIQUE_ID_HEADER",
    "WRITES",
    "JournaledWrite",
    "RequestJournal",
    "SocketJournal",
    "journaled_body",
    "journaled_frame",
)

SEQ_HEADER = b"x-kato-seq"
"""The processor's reply header naming the sequence number a mutating request got."""
JOURNAL_HEADER = "X-Kato-Journal"
"""On the processor ``/ws`` handshake: put ``data.seq`` in replies to state-changing frames."""

log = logging.getLogger(__name__)

_OBSERVING = frozenset({"/observe", "/observe-sequence", "/message"})
_json_decode = msgspec.json.decode
_json_encode = msgspec.json.encode


def _with_unique_id(observation: Any, assigned: Any) -> bool:
    """Fill in ``unique_id`` from the reply when the request had none; whether it changed."""
    if not isinstance(observation, dict) or observation.get("unique_id"):
        return False
    if not isinstance(assigned, dict) or not isinstance(assigned.get("unique_id"), str):
        return False
    observation["unique_id"] = assigned["unique_id"]
    return True


def journaled_body(path: str, body: bytes, reply: bytes) -> bytes:
    """The request body to replay: ``body`` with the processor's assigned unique ids."""
    if path not in _OBSERVING or not body:
        return body
    try:
        request, answer = _json_decode(body), _json_decode(reply)
    except msgspec.DecodeError:
        return body
    changed = False
    if path == "/observe":
        changed = _with_unique_id(request, answer)
    elif path == "/observe-sequence":
        observations = request.get("observations") if isinstance(request, dict) else None
        results = answer.get("results") if isinstance(answer, dict) else None
        if isinstance(observations, list) and isinstance(results, list):
            for observation, result in zip(observations, results, strict=False):
                changed = _with_unique_id(observation, result) or changed
    elif path == "/message":
        return journaled_frame(body, answer)
    return _json_encode(request) if changed else body


def journaled_frame(frame: bytes, reply: Any) -> bytes:
    """A WebSocket ``observe`` frame with the unique id the processor assigned filled in."""
    try:
        message = _json_decode(frame)
    except msgspec.DecodeError:
        return frame
    if not isinstance(message, dict) or message.get("type") != "observe":
        return frame
    payload = message.get("payload")
    data = reply.get("data") if isinstance(reply, dict) else None
    if _with_unique_id(payload, data):
        return _json_encode(message)
    return frame


WRITES = frozenset(
    {
        "/observe",
        "/observe-sequence",
        "/learn",
        "/clear-stm",
        "/clear-short-term-memory",
        "/clear-all",
        "/clear-all-memory",
        "/genes/update",
        "/state",
    }
)
"""Paths whose success changes a processor's state (an older processor does not number them)."""

_AHEAD_PATHS = WRITES - {"/observe-sequence", "/state"}
"""``POST`` writes journaled ahead: small bodies, one number each, nothing to fill in from the
reply but an ``/observe``'s id (offered). ``/observe-sequence`` and ``PUT /state`` go after."""

UNIQUE_ID_HEADER = b"x-kato-unique-id"
"""Offered on an ``/observe`` journaled ahead; the processor's reply repeats it when honoured."""

_ORDERS_MAX = 10_000
"""Sessions whose write order is remembered; past it, the idle ones are forgotten."""


def offered_unique_id() -> str:
    """An id for an observation journaled ahead (the processor's own format, spec §2.1)."""
    return f"obs-{random_hex()}-{int(time.time() * 1_000_000)}"


class _Order:
    """What this manager knows of one session's writes: the last number, what is in flight."""

    __slots__ = (
        "contended",
        "endpoint",
        "ids_ignored",
        "in_flight",
        "pending",
        "replaced",
        "seq",
        "started",
    )

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.seq: int | None = None
        """The processor's last sequence number, when no other writer can have moved it."""
        self.in_flight = 0
        self.started = 0
        self.pending: set[asyncio.Future[None]] = set()
        """One per entry written ahead and not yet confirmed, corrected or voided."""
        self.replaced = ""
        """The endpoint a restart replaced (``settled``): nothing more is written ahead for it,
        since a restart reading the journal could replay such an entry before it is voided."""
        self.ids_ignored = False
        """The processor did not take an offered id (an image older than the offer): its
        observes are journaled after the answer, which names the id it chose."""
        self.contended = False
        """A reply contradicted an entry written ahead: another writer (a client that reaches
        the processor some other way) moves the numbers. Writes are journaled after until one
        gets the number right after the last, so they stop paying for an entry ahead that is
        replaced each time (one Redis call more, and Redis's work for it)."""


def _stale(session_id: str) -> RouteStale:
    return RouteStale(
        "the session's processor was replaced: not acknowledged", session_id=session_id
    )


class JournaledWrite:
    """One mutating request on its way to the processor, and its entry if written ahead."""

    __slots__ = (
        "alone",
        "body",
        "epoch",
        "expected",
        "member",
        "method",
        "order",
        "path",
        "query",
        "reply",
        "session_id",
        "settled",
        "ticket",
        "unique_id",
        "voiding",
    )

    def __init__(
        self,
        order: _Order,
        session_id: str,
        epoch: int,
        method: str,
        path: str,
        query: bytes,
        body: bytes,
    ) -> None:
        self.order = order
        self.session_id = session_id
        self.epoch = epoch
        """The session's epoch the request's route was read at: the journal checks it."""
        self.method = method
        self.path = path
        self.query = query
        self.body = body
        self.alone = order.in_flight == 0
        order.in_flight += 1
        order.started += 1
        self.ticket = order.started
        self.expected = 0
        self.member = b""
        """The entry written ahead (empty: none), as stored."""
        self.reply: asyncio.Future[Any] | None = None
        self.settled: asyncio.Future[None] | None = None
        self.unique_id = ""
        self.voiding = False
        """A void runs in the background (``void_later``): it settles the entry."""

    @property
    def ahead(self) -> bool:
        """Whether the entry was written ahead (under ``expected``)."""
        return bool(self.member)

    def entry(self, seq: int, body: bytes, unique_id: str) -> JournalEntry:
        """This request's journal entry as the processor's ``seq``-th write."""
        return JournalEntry(
            seq, self.method, self.path, self.query.decode("latin-1"), body, unique_id
        )

    def confirmed_by(self, seq: int, honoured: bool) -> bool:
        """Whether the reply (``seq``, and the offered id echoed) matches the entry ahead."""
        return bool(self.member) and seq == self.expected and (honoured or not self.unique_id)


class RequestJournal:
    """The proxy's side of the journal: appends entries, raises when they cannot be kept.

    A journal reaching ``max_entries`` is handed to ``on_long`` (a checkpoint, in the
    background), so that a busy session's replay stays short. ``sockets_open`` tells whether a
    session has a proxied WebSocket open (its frames take numbers too: no writes ahead then).
    """

    def __init__(
        self,
        journal: Journal,
        *,
        max_entries: int,
        on_long: Callable[[str], None] | None = None,
        sockets_open: Callable[[str], bool] | None = None,
    ) -> None:
        self.journal = journal
        self.max_entries = max_entries
        self.on_long = on_long
        self._sockets_open = sockets_open
        self._orders: dict[str, _Order] = {}
        self._background: set[asyncio.Task[None]] = set()

    def begin(
        self,
        session_id: str,
        endpoint: str,
        epoch: int,
        method: str,
        path: str,
        query: bytes,
        body: bytes,
    ) -> JournaledWrite:
        """Note a mutating request about to be forwarded; offer it an entry ahead if it can be.

        The entry itself is written by ``sent``, once the request is on its way to the
        processor: the processor, the longer of the two, starts first, and Redis answers while
        it works. Every ``begin`` is matched by ``end`` once the request's outcome is journaled.
        The journal takes nothing for a route whose ``epoch`` is no longer the session's
        (``RouteStale``: the fence).
        """
        order = self._orders.get(session_id)
        if order is None:
            if len(self._orders) >= _ORDERS_MAX:
                self._orders = {s: o for s, o in self._orders.items() if o.in_flight or o.pending}
            order = self._orders[session_id] = _Order(endpoint)
        elif order.endpoint != endpoint:  # restored or recovered elsewhere: learn it again
            order.endpoint, order.seq, order.ids_ignored = endpoint, None, False
            order.contended = False
        write = JournaledWrite(order, session_id, epoch, method, path, query, body)
        if (
            write.alone
            and order.seq is not None
            and not order.contended
            and method == "POST"
            and path in _AHEAD_PATHS
            and not (order.ids_ignored and path == "/observe")
            and endpoint != order.replaced
            and not (self._sockets_open is not None and self._sockets_open(session_id))
        ):
            write.expected = order.seq + 1
            write.unique_id = offered_unique_id() if path == "/observe" else ""
        return write

    def sent(self, write: JournaledWrite) -> None:
        """The request was just written to the processor: write the entry ahead offered to it.

        Not when a restart began meanwhile (``settled``: the processor is being replaced) or
        the numbers moved: the request is then journaled after its answer, as it would be
        without an offer (an offered id the processor took is journaled with it).
        """
        order = write.order
        if (
            not write.expected
            or write.member
            or order.seq is None
            or order.seq + 1 != write.expected
            or order.endpoint == order.replaced
        ):
            return
        entry = write.entry(write.expected, write.body, write.unique_id)
        try:
            written = self.journal.ahead(write.session_id, entry, write.epoch)
        except OSError:  # the connection went as it was written to: journal after instead
            return
        except Exception:  # the request is on its way already: never fail it from here
            log.exception("entry ahead not written", extra={"session_id": write.session_id})
            return
        if written is None:
            return
        write.member, write.reply = written
        write.settled = asyncio.get_running_loop().create_future()
        order.pending.add(write.settled)

    async def confirm(self, write: JournaledWrite) -> None:
        """The processor applied the request as expected: its reply waits for Redis's ack.

        Raises ``RouteStale`` when the session's processor was replaced since the route was
        read: nothing was written, and the answer is not the session's.
        """
        length = await self._ahead_reply(write)
        if length == STALE:
            raise _stale(write.session_id)
        if length < 0:  # Redis found the number taken (a stale entry): it is this request's
            entry = write.entry(write.expected, write.body, write.unique_id)
            length = await self.journal.append(write.session_id, entry, epoch=write.epoch)
            if length == STALE:
                raise _stale(write.session_id)
        self._check_length(write.session_id, length)

    def confirmed_now(self, write: JournaledWrite, seq: bytes | None, honoured: bool) -> int | None:
        """``confirm`` without waiting, when there is nothing to wait for: the number applied.

        That is: the answer confirms the entry ahead (``seq`` expected, the offered id taken)
        and Redis has already acknowledged the entry with the journal's length. The caller
        answers, then calls ``ended_now`` (the bookkeeping waits, not the client). Otherwise
        ``None`` and nothing changed (``confirm``, or ``Forwarder._journal``, takes over).
        """
        reply = write.reply
        if (
            reply is None
            or not reply.done()
            or reply.cancelled()
            or reply.exception() is not None
            or seq is None
            or not seq.isdigit()
        ):
            return None
        applied = int(seq)
        length = reply.result()
        if (
            isinstance(length, Exception)
            or int(length) < 0
            or not write.confirmed_by(applied, honoured)
        ):
            return None
        return applied

    def ended_now(self, write: JournaledWrite, applied: int) -> None:
        """``end`` of a write ``confirmed_now`` said was applied as ``applied``."""
        assert write.reply is not None  # noqa: S101
        self._check_length(write.session_id, int(write.reply.result()))
        self.end(write, applied)

    async def record(
        self, write: JournaledWrite, seq: int, body: bytes, unique_id: str = ""
    ) -> None:
        """Journal a request the processor applied as ``seq`` (replacing an entry ahead).

        ``unique_id``: the id offered with it that the processor took (replay offers it again).
        Raises ``RouteStale`` as ``confirm`` does (nothing written ahead either, then).
        """
        if write.ahead:
            if seq != write.expected:
                write.order.contended = True
            with contextlib.suppress(KatoError):
                await self._ahead_reply(write)
        entry = write.entry(seq, body, unique_id)
        length = await self.journal.append(
            write.session_id, entry, replacing=write.member, epoch=write.epoch
        )
        if length == STALE:
            if write.ahead:  # written ahead before the epoch moved: not this session's now
                with contextlib.suppress(KatoError):
                    await self.journal.void(write.session_id, write.member)
            raise _stale(write.session_id)
        self._check_length(write.session_id, length)

    async def void(self, write: JournaledWrite) -> None:
        """The request was not applied as expected (or not known to be): remove its entry.

        Raises ``StoreUnavailable`` when Redis cannot remove it; the session's next entry
        under that number replaces it (``journal_append.lua``).
        """
        if not write.ahead:
            return
        with contextlib.suppress(KatoError):
            await self._ahead_reply(write)
        await self.journal.void(write.session_id, write.member)

    def void_later(self, write: JournaledWrite) -> None:
        """``void`` in the background (the request was cancelled: nothing may wait)."""
        if not write.ahead:
            return
        write.voiding = True
        task = asyncio.ensure_future(self._void_quietly(write))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _void_quietly(self, write: JournaledWrite) -> None:
        try:
            await self.void(write)
        except KatoError:
            log.warning(
                "entry written ahead not voided",
                extra={"session_id": write.session_id, "seq": write.expected},
            )
        finally:
            self._settle(write)

    def end(self, write: JournaledWrite, seq: int | None, *, unnumbered: bool = False) -> None:
        """The request's outcome is journaled (or voided): the ``seq`` it got, else ``None``.

        ``unnumbered``: the processor answered without a number (it applied nothing, so its
        numbering did not move). Its number is the session's last only if no other write was
        in flight during its whole life; otherwise the next write learns it again (journaled
        after).
        """
        order = write.order
        order.in_flight -= 1
        if not (write.alone and order.started == write.ticket):
            order.seq = None
        elif seq is not None:
            if order.contended and order.seq is not None and seq == order.seq + 1:
                order.contended = False  # no other writer in between: write ahead again
            order.seq = seq
        elif not unnumbered:
            order.seq = None
        if not write.voiding:
            self._settle(write)

    def _settle(self, write: JournaledWrite) -> None:
        if write.settled is not None and not write.settled.done():
            write.settled.set_result(None)
            write.order.pending.discard(write.settled)

    def ids_ignored(self, write: JournaledWrite) -> None:
        """The processor answered an offered id without taking it: offer none to it again."""
        write.order.ids_ignored = True

    def forget(self, session_id: str) -> None:
        """Another writer (a WebSocket) moved the session's numbers: learn them again."""
        order = self._orders.get(session_id)
        if order is not None:
            order.seq = None

    async def settled(self, session_id: str, timeout_s: float) -> None:
        """Wait (at most ``timeout_s``) until no entry written ahead for the session is pending.

        A restart reads the journal only then: an entry whose request is then voided and
        resent must not be replayed as well. From now on nothing is written ahead for the
        processor being replaced (a request that resolved it before the restart may still be
        on its way there): the session's next number is learned from the new one.
        """
        order = self._orders.get(session_id)
        if order is None:
            return
        order.replaced, order.seq = order.endpoint, None
        if order.pending:
            await asyncio.wait(list(order.pending), timeout=timeout_s)

    async def _ahead_reply(self, write: JournaledWrite) -> int:
        """Redis's reply to the entry written ahead: the journal's length, 0 or -1."""
        assert write.reply is not None  # noqa: S101 - only called for entries written ahead
        try:
            reply = await write.reply
        except (OSError, TimeoutError) as exc:
            raise StoreUnavailable(
                "the session store (Redis) cannot be reached", error=str(exc)
            ) from exc
        if isinstance(reply, Exception):
            return -1  # an error reply (a server that lost the script): append instead
        return int(reply)

    async def append(
        self,
        session_id: str,
        epoch: int,
        seq: int,
        method: str,
        path: str,
        query: str,
        body: bytes,
    ) -> None:
        """Append one applied request; ``StoreUnavailable`` when Redis cannot keep it.

        ``RouteStale`` when the session's epoch is no longer ``epoch`` (nothing written).
        """
        entry = JournalEntry(seq, method, path, query, body)
        length = await self.journal.append(session_id, entry, epoch=epoch)
        if length == STALE:
            raise _stale(session_id)
        self._check_length(session_id, length)

    def _check_length(self, session_id: str, length: int) -> None:
        if length >= self.max_entries and self.on_long is not None:
            self.on_long(session_id)

    def for_socket(self, session_id: str) -> SocketJournal:
        """The journal of one proxied WebSocket of the session (``epoch``: once it is open)."""
        return SocketJournal(self, session_id)


_SEQ_TAIL = re.compile(rb',"seq":(\d+)\}\}$')
"""How the processor ends a journaled reply: ``data.seq`` is the last key of the last object."""


_UNNUMBERED_RESULTS = (b'{"type":"observation_result"', b'{"type":"learn_result"')
"""Replies to writes; without ``data.seq`` the processor predates the journal."""


class SocketJournal:
    """One WebSocket's frames in flight, matched to the processor's replies (one each, in order).

    ``sent`` notes each client frame as it goes to the processor; ``reply`` takes each
    processor message: a reply carrying ``data.seq`` is journaled (as ``POST /message`` with
    the frame) and handed back without it, so clients see the frames they always saw.
    """

    def __init__(self, journal: RequestJournal, session_id: str) -> None:
        self._journal = journal
        self._session_id = session_id
        self.epoch = 0
        """The session's epoch the socket's route was read at (set once it is open)."""
        self._in_flight: deque[bytes] = deque()
        self._unnumbered = False

    def sent(self, frame: str | bytes) -> None:
        """A client frame is on its way to the processor."""
        self._in_flight.append(frame.encode() if isinstance(frame, str) else frame)

    async def reply(self, message: str | bytes) -> str | bytes:
        """The processor's reply to the oldest frame in flight, journaled if it changed state."""
        frame = self._in_flight.popleft() if self._in_flight else b""
        raw = message.encode() if isinstance(message, str) else message
        tail = _SEQ_TAIL.search(raw)
        if tail is None:
            if raw.startswith(_UNNUMBERED_RESULTS) and not self._unnumbered:
                self._unnumbered = True  # a processor older than the journal
                await self._journal.journal.mark_unnumbered(self._session_id)
            return message
        stripped = raw[: tail.start()] + b"}}"
        body = frame
        if b'"observe"' in frame:
            try:
                body = journaled_frame(frame, _json_decode(stripped))
            except msgspec.DecodeError:
                body = frame
        self._journal.forget(self._session_id)
        await self._journal.append(
            self._session_id, self.epoch, int(tail[1]), "POST", "/message", "", body
        )
        return stripped.decode() if isinstance(message, str) else stripped
