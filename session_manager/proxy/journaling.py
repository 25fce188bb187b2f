"""What the proxy journals: an applied mutating request, as the processor applied it.

The processor marks every request that changed its state with ``X-Kato-Seq`` (its sequence
number). Before that reply goes to the client, ``RequestJournal.record`` appends the request
to the session's journal (``store.journal``); if the append fails the client gets 503
``STORE_UNAVAILABLE`` instead: the write was not acknowledged. Observations sent without a
``unique_id`` are journaled with the one the processor assigned (it is in the reply), so a
replay is exact. A WebSocket message is journaled as ``POST /message`` with its frame, which
the processor answers exactly as ``/ws`` does.

Why the append waits for the processor's reply, and the reply for the append (one Redis round
trip, on ``JournalPipe``'s lean connection, after the processor answered). Overlapping it with
the processor's work was weighed and refused:

* Appending the request before forwarding it and "committing" its sequence number after
  still needs the commit acknowledged before the client is: a commit not yet applied when the
  manager dies (or one Redis refuses: ``OOM``, a lost connection) leaves an entry whose place
  in the processor's order is unknown, and replay must follow that order exactly. So two round
  trips instead of one, the second as long as today's append.
* Acknowledging the client while the commit is in flight breaks the rule itself: a success
  answer means the request is in the journal.
* Guessing the number beforehand (last seen + 1) is wrong as soon as two requests of a session
  are in flight (two clients, a WebSocket, another replica), and a wrong guess is a second
  entry under the same number.

So the cost is cut instead: no redis-py on this path, pre-framed bytes, hiredis parsing, the
unix socket of the embedded Redis, and concurrent appends pipelined on the one connection.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec

from session_manager.store.journal import Journal, JournalEntry

__all__ = (
    "JOURNAL_HEADER",
    "SEQ_HEADER",
    "RequestJournal",
    "SocketJournal",
    "journaled_body",
    "journaled_frame",
)

SEQ_HEADER = b"x-kato-seq"
"""The processor's reply header naming the sequence number a mutating request got."""
JOURNAL_HEADER = "X-Kato-Journal"
"""On the processor ``/ws`` handshake: put ``data.seq`` in replies to state-changing frames."""

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


class RequestJournal:
    """The proxy's side of the journal: appends entries, raises when they cannot be kept.

    A journal reaching ``max_entries`` is handed to ``on_long`` (a checkpoint, in the
    background), so that a busy session's replay stays short.
    """

    def __init__(
        self,
        journal: Journal,
        *,
        max_entries: int,
        on_long: Callable[[str], None] | None = None,
    ) -> None:
        self.journal = journal
        self.max_entries = max_entries
        self.on_long = on_long

    async def record(
        self, session_id: str, seq: int, method: str, path: str, query: str, body: bytes
    ) -> None:
        """Append one applied request; ``StoreUnavailable`` when Redis cannot keep it."""
        entry = JournalEntry(seq, method, path, query, body)
        length = await self.journal.append(session_id, entry)
        if length >= self.max_entries and self.on_long is not None:
            self.on_long(session_id)

    def for_socket(self, session_id: str) -> SocketJournal:
        """The journal of one proxied WebSocket of the session."""
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
        await self._journal.record(self._session_id, int(tail[1]), "POST", "/message", "", body)
        return stripped.decode() if isinstance(message, str) else stripped
