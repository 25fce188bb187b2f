"""A session's replaced processor is fenced: it never takes a write again (issue 18, node loss).

Every restart of a session's processor bumps the session's epoch in the script that claims the
start, and the processor's secret derives from (processor id, epoch). A processor left running
where it was lost (a node cut off, then back; here: SIGSTOP, a removal that fails as it does
on an unreachable node, SIGCONT) holds the old epoch's secret: nothing the manager sends any
more is accepted by it. A request already routed to it (another replica's route, read before
the recovery) is answered, but the journal refuses the answer of an older epoch, so it is not
acknowledged and is sent again to the new processor.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from session_manager.backends.base import ProcessorHandle
from session_manager.models import SessionRecord
from session_manager.processor_secrets import ProcessorSecrets
from session_manager.sessions import Sessions
from session_manager.sessions.hibernation import snapshot_seq
from tests.support.manager import Manager, SettingsFactory, StartManager, auth
from tests.support.pids import pid_running


async def _observe(manager: Manager, session: dict[str, Any], symbol: str) -> httpx.Response:
    return await manager.client.post(
        f"/session/{session['session_id']}/observe",
        json={"strings": [symbol]},
        headers=auth(session),
        timeout=60,
    )


async def _stm(manager: Manager, session: dict[str, Any]) -> Any:
    reply = await manager.client.get(f"/session/{session['session_id']}/stm", headers=auth(session))
    assert reply.status_code == 200, reply.text
    return reply.json()["stm"]


async def _record(manager: Manager, session_id: str) -> SessionRecord:
    record = await manager.app.state.store.get(session_id)
    assert record is not None
    return record


def _secrets(manager: Manager) -> ProcessorSecrets:
    key = manager.app.state.settings.processor_secret_key
    assert key, "the manager runs with a processor key"
    return ProcessorSecrets(key)


def _keep_alive_when_lost(manager: Manager, monkeypatch: pytest.MonkeyPatch, ref: str) -> None:
    """The backend cannot remove processor ``ref`` (its node is unreachable) nor sees it exit.

    The one fault not produced for real: the process backend can always kill its children.
    """
    backend = manager.app.state.backend
    backend.watch_exits(lambda handle: None)  # recovered by hand here, not by the crash watch
    stop = backend.stop

    async def unreachable(handle: ProcessorHandle) -> None:
        if handle.ref == ref:
            raise OSError("node unreachable")
        await stop(handle)

    monkeypatch.setattr(backend, "stop", unreachable)


@contextlib.contextmanager
def _stopped(pid: int) -> Iterator[None]:
    """The processor hangs (SIGSTOP) inside; it is killed at the end whatever happens."""
    os.killpg(pid, signal.SIGSTOP)
    try:
        yield
    except BaseException:
        os.killpg(pid, signal.SIGKILL)
        raise


async def test_recovery_bumps_the_epoch_and_the_new_processor_refuses_the_old_secret(
    manager: Manager,
) -> None:
    session = await manager.create()
    sid = session["session_id"]
    assert (await _observe(manager, session, "a")).status_code == 200
    first = await _record(manager, sid)
    assert first.epoch == 0  # a session's first processor: the secret of the id alone
    manager.app.state.backend.watch_exits(lambda handle: None)
    os.killpg(int(first.ref), signal.SIGKILL)
    while pid_running(int(first.ref)):
        await asyncio.sleep(0.02)
    sessions: Sessions = manager.app.state.sessions
    recovered = await sessions.recover(first)
    assert recovered is not None
    assert recovered.epoch == 1
    secrets = _secrets(manager)
    async with httpx.AsyncClient(base_url=recovered.endpoint, trust_env=False) as direct:
        old = await direct.get("/stm", headers=secrets.headers(sid, 0))
        assert old.status_code == 401, old.text
        new = await direct.get("/stm", headers=secrets.headers(sid, 1))
        assert new.status_code == 200
        assert new.json()["stm"] == [["a"]]
    # The proxy sends the new epoch's secret; a hibernation's restore bumps it again.
    assert await _stm(manager, session) == [["a"]]
    assert await sessions.hibernate(sid)
    assert await _stm(manager, session) == [["a"]]
    assert (await _record(manager, sid)).epoch == 2


async def test_a_lost_processor_that_comes_back_answers_nothing_and_takes_no_write(
    manager: Manager, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = await manager.create()
    sid = session["session_id"]
    for symbol in ("a", "b"):
        assert (await _observe(manager, session, symbol)).status_code == 200
    old = await _record(manager, sid)
    pid = int(old.ref)
    _keep_alive_when_lost(manager, monkeypatch, old.ref)
    sessions: Sessions = manager.app.state.sessions
    secrets = _secrets(manager)
    try:
        with _stopped(pid):  # cut off: it cannot be reached, nor removed
            recovered = await sessions.recover(old)
            assert recovered is not None
            assert recovered.epoch == old.epoch + 1
        os.killpg(pid, signal.SIGCONT)  # the node is back, its processor still running
        assert pid_running(pid)
        for symbol in ("c", "d"):
            reply = await _observe(manager, session, symbol)
            assert reply.status_code == 200, reply.text
        assert await _stm(manager, session) == [["a"], ["b"], ["c"], ["d"]]
        async with httpx.AsyncClient(base_url=old.endpoint, trust_env=False) as direct:
            # What the manager sends now (the new epoch's secret) is refused by the old one.
            for method, path in (("GET", "/stm"), ("POST", "/observe"), ("GET", "/state")):
                refused = await direct.request(
                    method,
                    path,
                    json={"strings": ["x"]},
                    headers=secrets.headers(sid, recovered.epoch),
                )
                assert refused.status_code == 401, (method, path, refused.text)
            # With its own (old) secret: no write reached it since it was replaced.
            own = secrets.headers(sid, old.epoch)
            stm = await direct.get("/stm", headers=own)
            assert stm.json()["stm"] == [["a"], ["b"]]
            status = await direct.get("/status", headers=own)
            assert status.json()["time"] == 2
        # A checkpoint pass that read the record before the recovery saves nothing of it.
        assert await sessions.checkpoint(await _record(manager, sid)) == 4
        assert await sessions.checkpoint(old) is None
        snapshot = await manager.app.state.store.load_snapshot(sid)
        assert snapshot is not None
        assert snapshot_seq(snapshot) == 4
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


async def test_a_write_routed_to_the_old_processor_by_another_replica_lands_in_the_new_one(
    start_manager: StartManager,
    make_settings: SettingsFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Replica A routes a write to the processor, which hangs (its node cut off); replica B
    recovers the session; the node comes back and the old processor answers A. Before the
    fence A journaled that answer and acknowledged it, while the new processor never had the
    write: the session's next write took its number and it was lost.
    """
    settings = make_settings()
    replica_a, replica_b = await start_manager(settings), await start_manager(settings)
    session = await replica_b.create()
    sid = session["session_id"]
    for symbol in ("a", "b"):
        assert (await _observe(replica_b, session, symbol)).status_code == 200
    assert await _stm(replica_a, session) == [["a"], ["b"]]  # A has the route cached
    old = await _record(replica_b, sid)
    pid = int(old.ref)
    for replica in (replica_a, replica_b):
        _keep_alive_when_lost(replica, monkeypatch, old.ref)
    try:
        with _stopped(pid):
            in_flight = asyncio.ensure_future(_observe(replica_a, session, "c"))
            await asyncio.sleep(0.3)  # A has sent it: the processor holds it unanswered
            assert not in_flight.done()
            b_sessions: Sessions = replica_b.app.state.sessions
            recovered = await b_sessions.recover(old)
            assert recovered is not None
        os.killpg(pid, signal.SIGCONT)  # the old processor applies it and answers A
        reply = await asyncio.wait_for(in_flight, 60)
        assert reply.status_code == 200, reply.text
        expected = [["a"], ["b"], ["c"]]
        assert await _stm(replica_b, session) == expected  # acknowledged: in the new one
        # The session's next write does not take the acknowledged one's place.
        assert (await _observe(replica_b, session, "d")).status_code == 200
        assert await _stm(replica_a, session) == [*expected, ["d"]]
        # And a recovery from the journal still has every acknowledged write, once.
        current = await _record(replica_b, sid)
        os.killpg(int(current.ref), signal.SIGKILL)
        while pid_running(int(current.ref)):
            await asyncio.sleep(0.02)
        again = await b_sessions.recover(current)
        assert again is not None
        assert await _stm(replica_b, session) == [*expected, ["d"]]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


async def test_a_websocket_bridged_to_a_replaced_processor_is_closed_1012_unacknowledged(
    manager: Manager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frame the old processor answers after the recovery is not passed on (nor journaled):
    the socket closes with 1012, and the client resends on a new socket, to the new one."""
    session = await manager.create()
    sid = session["session_id"]
    assert (await _observe(manager, session, "a")).status_code == 200
    old = await _record(manager, sid)
    pid = int(old.ref)
    _keep_alive_when_lost(manager, monkeypatch, old.ref)
    sessions: Sessions = manager.app.state.sessions
    url = f"{manager.ws_url}/session/{sid}/ws?token={session['token']}"
    frame = json.dumps(
        {"type": "observe", "payload": {"strings": ["b"], "vectors": [], "emotives": {}}}
    )
    try:
        async with connect(url, proxy=None, open_timeout=10) as ws:
            with _stopped(pid):
                await ws.send(frame)  # reaches the old processor, which hangs
                await asyncio.sleep(0.3)
                assert await sessions.recover(old) is not None
            os.killpg(pid, signal.SIGCONT)
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 30)  # its answer is not passed on
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1012
        async with connect(url, proxy=None, open_timeout=10) as ws:
            await ws.send(frame)
            reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
            assert reply["type"] == "observation_result", reply
        assert await _stm(manager, session) == [["a"], ["b"]]
        entries = await manager.app.state.store.journal.entries_after(sid, 0)
        assert [e.path for e in entries].count("/message") == 1  # the resent frame only
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
