"""Journal appends over their own pipelined connection (``JournalPipe``), on a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis

from session_manager.errors import RouteStale, StoreUnavailable
from session_manager.proxy.journaling import JournaledWrite, RequestJournal
from session_manager.store import SessionStore
from session_manager.store.journal import STALE, JournalEntry
from session_manager.store.journal_pipe import JournalPipe


@pytest.fixture(name="piped")
async def fx_piped(store: SessionStore) -> AsyncIterator[SessionStore]:
    """``store`` whose journal appends go through a ``JournalPipe``; one live session ``s``."""
    pipe = store.journal.attach_pipe(timeout_s=2.0)
    assert pipe is not None  # the test Redis is a unix socket: the pipe speaks it
    await store.journal.redis.hset(store.keys.session("s"), mapping={"status": "ready"})
    yield store
    await pipe.aclose()


def _entry(seq: int) -> JournalEntry:
    return JournalEntry(seq, "POST", "/observe", "", b'{"strings":["%d"]}' % seq)


async def test_appended_entries_are_replayed_in_order(piped: SessionStore) -> None:
    lengths = [await piped.journal.append("s", _entry(seq)) for seq in (1, 2, 3)]
    assert lengths == [1, 2, 3]
    assert await piped.journal.entries_after("s", 1) == [_entry(2), _entry(3)]


async def test_an_ended_session_gets_no_entry(piped: SessionStore) -> None:
    assert await piped.journal.append("gone", _entry(1)) == 0
    assert await piped.journal.length("gone") == 0


async def test_concurrent_appends_share_the_connection_and_each_gets_its_reply(
    piped: SessionStore,
) -> None:
    lengths = await asyncio.gather(*(piped.journal.append("s", _entry(n)) for n in range(1, 201)))
    assert sorted(lengths) == list(range(1, 201))
    assert [e.seq for e in await piped.journal.entries_after("s", 0)] == list(range(1, 201))


async def test_a_server_that_lost_the_script_still_appends(piped: SessionStore) -> None:
    await piped.journal.append("s", _entry(1))
    await piped.journal.redis.script_flush()
    assert await piped.journal.append("s", _entry(2)) == 2


async def test_a_dropped_connection_is_replaced(piped: SessionStore) -> None:
    await piped.journal.append("s", _entry(1))
    await piped.journal.redis.client_kill_filter(_type="normal", skipme=True)
    assert await piped.journal.append("s", _entry(2)) == 2
    assert await piped.journal.length("s") == 2


async def test_an_unreachable_redis_is_store_unavailable(tmp_path: object) -> None:
    async def refused() -> object:
        raise ConnectionRefusedError("no Redis here")

    pipe = JournalPipe(refused, "return 1", timeout_s=1.0)  # type: ignore[arg-type]
    with pytest.raises(StoreUnavailable):
        await pipe.append((b"k1", b"k2"), 1, b"entry")


async def test_a_redis_that_stops_answering_is_store_unavailable_in_time(tmp_path: Path) -> None:
    """A server that takes the command and never answers: 503 after about the timeout."""
    path = str(tmp_path / "silent.sock")
    received: list[bytes] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            received.append(data)
        writer.close()

    server = await asyncio.start_unix_server(silent, path)
    async with server:
        pipe = JournalPipe.for_client(aioredis.Redis(unix_socket_path=path), "return 1", 0.4)
        assert pipe is not None
        with pytest.raises(StoreUnavailable):  # not a hang (the liveness bound is generous)
            async with asyncio.timeout(30):
                await pipe.append((b"k1", b"k2"), 1, b"entry")
        assert b"EVALSHA" in b"".join(received)
        await pipe.aclose()


def _forwarded(journal: RequestJournal, *request: Any) -> JournaledWrite:
    """``begin``, then the request's bytes go to the processor (``sent``, as the pool calls it)."""
    write = journal.begin("s", *request)
    journal.sent(write)
    return write


async def _connected(piped: SessionStore) -> RequestJournal:
    """A proxy journal over ``piped`` whose pipe is connected (writes ahead need it open)."""
    await piped.journal.append("s", JournalEntry(1, "POST", "/learn", "", b""))
    journal = RequestJournal(piped.journal, max_entries=1000)
    first = _forwarded(journal, "http://p", 0, "POST", "/learn", b"", b"")
    assert not first.ahead  # the session's number is not known yet: journaled after
    await journal.record(first, 1, b"")
    journal.end(first, 1)
    return journal


async def test_a_lone_write_is_journaled_ahead_and_a_concurrent_one_after(
    piped: SessionStore,
) -> None:
    journal = await _connected(piped)
    lone = _forwarded(journal, "http://p", 0, "POST", "/observe", b"", b'{"strings":["a"]}')
    assert lone.ahead
    assert lone.expected == 2
    assert lone.unique_id
    other = _forwarded(journal, "http://p", 0, "POST", "/learn", b"", b"")
    assert not other.ahead  # another write is in flight: the number is not certain
    await journal.confirm(lone)
    journal.end(lone, 2)
    await journal.record(other, 3, b"")
    journal.end(other, 3)
    assert [(e.seq, e.path) for e in await piped.journal.entries_after("s", 0)] == [
        (1, "/learn"),
        (2, "/observe"),
        (3, "/learn"),
    ]
    # Two writes overlapped: the next one learns the number again.
    assert not _forwarded(journal, "http://p", 0, "POST", "/learn", b"", b"").ahead


async def test_an_entry_ahead_under_another_number_is_replaced_by_the_one_it_got(
    piped: SessionStore,
) -> None:
    journal = await _connected(piped)
    write = _forwarded(journal, "http://p", 0, "POST", "/learn", b"", b"")
    assert write.ahead
    assert write.expected == 2
    await journal.record(write, 5, b"")  # another writer took 2..4 meanwhile
    journal.end(write, 5)
    assert [e.seq for e in await piped.journal.entries_after("s", 0)] == [1, 5]


async def test_an_entry_ahead_is_never_written_over_an_existing_one(piped: SessionStore) -> None:
    journal = await _connected(piped)
    taken = JournalEntry(2, "POST", "/message", "", b"frame")
    await piped.journal.append("s", taken)  # e.g. a WebSocket frame numbered 2 meanwhile
    write = _forwarded(journal, "http://p", 0, "POST", "/learn", b"", b"")
    assert write.ahead
    assert write.expected == 2
    await journal.record(write, 3, b"")  # the processor says 3: it was stale
    journal.end(write, 3)
    assert await piped.journal.entries_after("s", 0) == [
        JournalEntry(1, "POST", "/learn", "", b""),
        taken,
        JournalEntry(3, "POST", "/learn", "", b""),
    ]


async def test_a_void_removes_the_entry_ahead_and_settles_it(piped: SessionStore) -> None:
    journal = await _connected(piped)
    write = _forwarded(journal, "http://p", 0, "POST", "/learn", b"", b"")
    assert write.ahead
    settled = asyncio.ensure_future(journal.settled("s", timeout_s=5))
    await asyncio.sleep(0.05)
    assert not settled.done()  # a restart waits: the entry may yet be voided
    await journal.void(write)
    journal.end(write, None)
    await asyncio.wait_for(settled, 1)
    assert [e.seq for e in await piped.journal.entries_after("s", 0)] == [1]


async def test_entries_journaled_before_ids_were_offered_still_replay(piped: SessionStore) -> None:
    """An entry of the previous version (five fields, no offered id) left in Redis by an upgrade."""
    old = msgspec.msgpack.encode([3, "POST", "/observe", "", b'{"strings":["a"]}'])
    await piped.journal.redis.zadd(piped.keys.journal("s"), {old: 3})
    assert await piped.journal.entries_after("s", 0) == [
        JournalEntry(3, "POST", "/observe", "", b'{"strings":["a"]}', unique_id="")
    ]


async def test_a_processor_that_ignores_offered_ids_gets_its_observes_journaled_after(
    piped: SessionStore,
) -> None:
    journal = await _connected(piped)
    write = _forwarded(journal, "http://p", 0, "POST", "/observe", b"", b"{}")
    assert write.unique_id  # offered; an older processor answers without taking it
    journal.ids_ignored(write)
    await journal.record(write, 2, b'{"unique_id":"its-own"}')
    journal.end(write, 2)
    assert not _forwarded(journal, "http://p", 0, "POST", "/observe", b"", b"{}").ahead


async def test_nothing_is_written_ahead_for_a_processor_a_restart_replaces(
    piped: SessionStore,
) -> None:
    journal = await _connected(piped)
    await journal.settled("s", timeout_s=1)  # a restart is about to read the journal
    late = _forwarded(journal, "http://p", 0, "POST", "/learn", b"", b"")
    assert not late.ahead  # resolved to the old processor before the restart: not ahead
    journal.end(late, None, unnumbered=True)
    first = _forwarded(journal, "http://new", 0, "POST", "/learn", b"", b"")
    assert not first.ahead  # the new processor's number is learned first
    await journal.record(first, 2, b"")
    journal.end(first, 2)
    assert _forwarded(journal, "http://new", 0, "POST", "/learn", b"", b"").ahead


async def test_an_older_epoch_gets_nothing_journaled_ahead_or_after(piped: SessionStore) -> None:
    """The fence: once a restart bumped the session's epoch, a write answered through a route of
    the older epoch (its processor replaced) is refused by both scripts and not acknowledged."""
    journal = await _connected(piped)
    ahead = _forwarded(journal, "http://p", 0, "POST", "/learn", b"", b"")
    assert ahead.ahead
    await piped.journal.redis.hset(piped.keys.session("s"), "epoch", 1)  # recovered meanwhile
    await journal.confirm(ahead)  # written before the epoch moved: the recovery replays it
    journal.end(ahead, 2)
    stale = _forwarded(journal, "http://p", 0, "POST", "/learn", b"", b"")
    assert stale.ahead  # the expectation is this manager's; Redis checks the epoch
    with pytest.raises(RouteStale):
        await journal.confirm(stale)
    journal.end(stale, None)
    late = _forwarded(journal, "http://p", 0, "POST", "/learn", b"", b"")
    assert not late.ahead
    with pytest.raises(RouteStale):
        await journal.record(late, 3, b"")
    journal.end(late, None)
    with pytest.raises(RouteStale):
        await journal.append("s", 0, 3, "POST", "/message", "", b"frame")
    assert [e.seq for e in await piped.journal.entries_after("s", 0)] == [1, 2]
    current = _forwarded(journal, "http://new", 1, "POST", "/learn", b"", b"")
    await journal.record(current, 3, b"")
    journal.end(current, 3)
    assert [e.seq for e in await piped.journal.entries_after("s", 0)] == [1, 2, 3]


async def test_the_epoch_is_checked_without_the_pipe_too(store: SessionStore) -> None:
    await store.journal.redis.hset(store.keys.session("s"), mapping={"status": "ready"})
    entry = JournalEntry(1, "POST", "/learn", "", b"")
    assert await store.journal.append("s", entry, epoch=0) == 1  # no field yet: epoch 0
    await store.journal.redis.hset(store.keys.session("s"), "epoch", 2)
    assert (
        await store.journal.append("s", JournalEntry(2, "POST", "/learn", "", b""), epoch=1)
        == STALE
    )
    assert await store.journal.append("s", JournalEntry(2, "POST", "/learn", "", b""), epoch=2) == 2
    assert await store.journal.append("s", JournalEntry(3, "POST", "/learn", "", b"")) == 3


async def test_a_restart_between_offer_and_send_gets_no_entry_ahead(piped: SessionStore) -> None:
    journal = await _connected(piped)
    write = journal.begin("s", "http://p", 0, "POST", "/learn", b"", b"")
    await journal.settled("s", timeout_s=1)  # e.g. while the request waited for a connection
    journal.sent(write)
    assert not write.ahead  # journaled after its answer instead
    await journal.record(write, 2, b"")
    journal.end(write, 2)
    assert [e.seq for e in await piped.journal.entries_after("s", 0)] == [1, 2]


async def test_writes_are_journaled_after_while_another_writer_moves_the_numbers(
    piped: SessionStore,
) -> None:
    journal = await _connected(piped)
    write = _forwarded(journal, "http://p", 0, "POST", "/observe", b"", b"{}")
    assert write.ahead
    await journal.record(write, 4, b"{}", write.unique_id)  # two writes came some other way
    journal.end(write, 4)
    after = _forwarded(journal, "http://p", 0, "POST", "/learn", b"", b"")
    assert not after.ahead  # the next entry ahead would most likely be replaced too
    await journal.record(after, 5, b"")  # and no one else wrote in between
    journal.end(after, 5)
    again = _forwarded(journal, "http://p", 0, "POST", "/learn", b"", b"")
    assert again.ahead
    await journal.void(again)
    journal.end(again, None)
    entries = await piped.journal.entries_after("s", 0)
    assert [(e.seq, e.unique_id) for e in entries] == [(1, ""), (4, write.unique_id), (5, "")]
