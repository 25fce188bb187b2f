"""Entries written ahead of the processor's answer (``proxy.journaling``): kept, corrected or
voided by the answer, so that a recovery replays exactly the requests the processor applied."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from typing import Any

from websockets.asyncio.client import connect

from tests.integration.session_manager.test_crash_recovery import kill, state
from tests.support.manager import Manager, SettingsFactory, StartManager, auth, status_of


async def observe(manager: Manager, session: dict[str, Any], word: str) -> Any:
    return await manager.client.post(
        f"/session/{session['session_id']}/observe",
        json={"strings": [word]},
        headers=auth(session),
    )


async def entries(manager: Manager, session: dict[str, Any]) -> list[Any]:
    return list(await manager.app.state.store.journal.entries_after(session["session_id"], 0))


async def test_a_lone_writer_s_observes_are_journaled_ahead_with_the_id_they_got(
    manager: Manager,
) -> None:
    session = await manager.create()
    replies = [await observe(manager, session, word) for word in ["a", "b", "c"]]
    assert [r.status_code for r in replies] == [200, 200, 200]
    journal = await entries(manager, session)
    assert [e.seq for e in journal] == [1, 2, 3]
    # The first write teaches the manager the session's number; the next ones go ahead, with
    # the id the manager offered and the processor used.
    assert journal[0].unique_id == ""
    assert [e.unique_id for e in journal[1:]] == [r.json()["unique_id"] for r in replies[1:]]
    before = await state(manager, session)
    await kill(manager, session)
    assert await state(manager, session) == before


async def test_concurrent_writes_are_journaled_in_the_order_the_processor_applied_them(
    manager: Manager,
) -> None:
    session = await manager.create()
    sid, headers = session["session_id"], auth(session)
    await observe(manager, session, "first")
    words = [f"w{i}" for i in range(24)]

    async def writer(chunk: list[str]) -> list[tuple[int, str]]:
        got = []
        for word in chunk:
            reply = await observe(manager, session, word)
            assert reply.status_code == 200, reply.text
            got.append((int(reply.headers["x-kato-seq"]), word))
        learn = await manager.client.post(f"/session/{sid}/learn", headers=headers)
        assert learn.status_code == 200, learn.text
        got.append((int(learn.headers["x-kato-seq"]), "learn"))
        return got

    results = await asyncio.gather(*(writer(words[i::4]) for i in range(4)))
    applied = dict(pair for got in results for pair in got)
    journal = await entries(manager, session)
    assert [e.seq for e in journal] == list(range(1, len(applied) + 2))  # each number once
    for entry in journal[1:]:
        word = applied[entry.seq]
        assert entry.path == "/learn" if word == "learn" else word.encode() in entry.body
    before = await state(manager, session)
    await kill(manager, session)
    assert await state(manager, session) == before


async def test_a_refused_write_leaves_no_entry_and_the_numbering_goes_on(
    manager: Manager,
) -> None:
    session = await manager.create()
    sid, headers = session["session_id"], auth(session)
    for word in ["a", "b"]:
        await observe(manager, session, word)
    refused = await manager.client.post(
        f"/session/{sid}/observe", content=b"{not json", headers=headers
    )
    assert refused.status_code == 422, refused.text  # INVALID_JSON: nothing applied
    assert "x-kato-seq" not in refused.headers
    assert [e.seq for e in await entries(manager, session)] == [1, 2]  # the entry ahead voided
    after = await observe(manager, session, "c")
    assert after.headers["x-kato-seq"] == "3"
    journal = await entries(manager, session)
    assert [e.seq for e in journal] == [1, 2, 3]
    assert journal[2].unique_id == after.json()["unique_id"]  # journaled ahead again
    before = await state(manager, session)
    await kill(manager, session)
    assert await state(manager, session) == before


async def test_a_write_the_processor_never_answered_is_voided_and_not_replayed(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    manager = await start_manager(make_settings(proxy_read_timeout_s=1.0))
    session = await manager.create()
    for word in ["a", "b"]:
        await observe(manager, session, word)
    before = await state(manager, session)
    pid = int((await status_of(manager, session))["ref"])
    os.killpg(pid, signal.SIGSTOP)  # hangs: the request gets no answer
    try:
        hung = await observe(manager, session, "never")
        assert hung.status_code == 504, hung.text
        assert [e.seq for e in await entries(manager, session)] == [1, 2]
    finally:
        os.killpg(pid, signal.SIGKILL)
    assert await state(manager, session) == before  # recovered without the unanswered write


async def test_a_write_cut_off_by_a_crash_is_voided_then_resent_and_applied_once(
    manager: Manager,
) -> None:
    session = await manager.create()
    sid, headers = session["session_id"], auth(session)
    await observe(manager, session, "a")
    await manager.client.post(f"/session/{sid}/learn", headers=headers)
    pid = int((await status_of(manager, session))["ref"])
    os.killpg(pid, signal.SIGSTOP)
    in_flight = asyncio.ensure_future(observe(manager, session, "b"))
    try:
        for _ in range(200):  # until its entry is written ahead (then it is on the wire)
            if len(await entries(manager, session)) == 3:
                break
            await asyncio.sleep(0.01)
        assert [e.seq for e in await entries(manager, session)] == [1, 2, 3]
    finally:
        os.killpg(pid, signal.SIGKILL)  # the connection is reset: no definite answer
    reply = await in_flight
    assert reply.status_code == 200, reply.text  # recovered, then sent once more
    stm = await manager.client.get(f"/session/{sid}/stm", headers=headers)
    assert stm.json()["stm"] == [["b"]]  # once, not twice
    journal = await entries(manager, session)
    assert sorted(e.seq for e in journal) == [e.seq for e in journal]
    assert len({e.seq for e in journal}) == len(journal)
    before = await state(manager, session)
    assert before["time"] == 2
    await kill(manager, session)
    assert await state(manager, session) == before


async def test_http_writes_while_a_websocket_writes_too_are_journaled_in_order(
    manager: Manager,
) -> None:
    """A socket's frames take numbers the HTTP side does not see: its writes go after then."""
    session = await manager.create()
    sid = session["session_id"]
    await observe(manager, session, "a")
    await observe(manager, session, "b")  # journaled ahead: the number is known
    frame = {"type": "observe", "payload": {"strings": ["ws"], "vectors": [], "emotives": {}}}
    url = f"{manager.ws_url}/session/{sid}/ws"
    async with connect(url, additional_headers=auth(session), proxy=None) as ws:
        for word in ["c", "d"]:
            await ws.send(json.dumps(frame))
            assert json.loads(await ws.recv())["type"] == "observation_result"
            reply = await observe(manager, session, word)
            assert reply.status_code == 200, reply.text
    after = await observe(manager, session, "e")
    assert after.headers["x-kato-seq"] == "7"
    journal = await entries(manager, session)
    assert [e.seq for e in journal] == [1, 2, 3, 4, 5, 6, 7]
    paths = ["/observe", "/observe", "/message", "/observe", "/message", "/observe", "/observe"]
    assert [e.path for e in journal] == paths
    # Only "b" went ahead: "c" and "d" were written while the socket was open.
    assert [bool(e.unique_id) for e in journal[:6]] == [False, True, False, False, False, False]
    before = await state(manager, session)
    await kill(manager, session)
    assert await state(manager, session) == before
