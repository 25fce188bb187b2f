"""The ``kato_sessions`` client against a real manager: every method, typed errors, retries.

The manager runs in this event loop, so the blocking ``Client`` runs in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from kato_sessions import (
    AsyncClient,
    AsyncSession,
    CapacityExceeded,
    Client,
    InvalidGene,
    InvalidObservation,
    NotFound,
    Retry,
    Session,
    SessionExpired,
    SessionNotFound,
    Unauthorized,
    UnknownGene,
    ValidationError,
)

from session_manager.models import SessionStatus
from session_manager.store import SessionStore
from tests.support.manager import ADMIN_TOKEN, API_KEY, Manager, SettingsFactory, StartManager
from tests.support.timing import wait_for


def _client(manager: Manager, **options: Any) -> AsyncClient:
    return AsyncClient(manager.base_url, api_key=API_KEY, admin_token=ADMIN_TOKEN, **options)


async def _tour(session: AsyncSession) -> dict[str, Any]:
    """Every processor method once, through the async session; what each answered."""
    seen: dict[str, Any] = {}
    for word in ("a", "b", "c"):
        seen["observe"] = await session.observe([word], emotives={"joy": 1.0})
    seen["learn"] = await session.learn()
    seen["sequence"] = await session.observe_sequence(
        [{"strings": ["a"]}, {"strings": ["b"], "unique_id": "u-b"}]
    )
    seen["stm"] = await session.stm()
    seen["predictions"] = await session.predictions()
    seen["stored"] = await session.predictions(unique_id="u-b")
    seen["pattern"] = await session.pattern(seen["learn"].pattern_name)
    seen["genes"] = await session.update_genes({"max_predictions": 7})
    seen["gene"] = await session.gene("max_predictions")
    seen["percept"] = await session.percept_data()
    seen["cognition"] = await session.cognition_data()
    seen["metrics"] = await session.metrics()
    seen["status"] = await session.status()
    seen["health"] = await session.health()
    seen["state"] = await session.get_state()
    seen["clear_stm"] = await session.clear_stm()
    seen["put_state"] = await session.put_state(seen["state"])
    seen["restored_stm"] = await session.stm()
    seen["clear_all"] = await session.clear_all()
    seen["info"] = await session.info(live_genes=True)
    seen["keepalive"] = await session.keepalive()
    return seen


def _sync_tour(session: Session) -> dict[str, Any]:
    """The same calls through the blocking session."""
    seen: dict[str, Any] = {}
    for word in ("a", "b", "c"):
        seen["observe"] = session.observe([word], emotives={"joy": 1.0})
    seen["learn"] = session.learn()
    seen["sequence"] = session.observe_sequence(
        [{"strings": ["a"]}, {"strings": ["b"], "unique_id": "u-b"}]
    )
    seen["stm"] = session.stm()
    seen["predictions"] = session.predictions()
    seen["stored"] = session.predictions(unique_id="u-b")
    seen["pattern"] = session.pattern(seen["learn"].pattern_name)
    seen["genes"] = session.update_genes({"max_predictions": 7})
    seen["gene"] = session.gene("max_predictions")
    seen["percept"] = session.percept_data()
    seen["cognition"] = session.cognition_data()
    seen["metrics"] = session.metrics()
    seen["status"] = session.status()
    seen["health"] = session.health()
    seen["state"] = session.get_state()
    seen["clear_stm"] = session.clear_stm()
    seen["put_state"] = session.put_state(seen["state"])
    seen["restored_stm"] = session.stm()
    seen["clear_all"] = session.clear_all()
    seen["info"] = session.info(live_genes=True)
    seen["keepalive"] = session.keepalive()
    return seen


def _check_tour(seen: dict[str, Any], session_id: str) -> None:
    assert seen["observe"].time == 3
    assert seen["learn"].pattern_name.startswith("PTRN|")
    assert [r.time for r in seen["sequence"].results] == [4, 5]
    assert seen["stm"].stm == [["a"], ["b"]]
    assert seen["predictions"].predictions, "a-b predicts c"
    assert seen["predictions"].predictions[0]["name"] == seen["learn"].pattern_name
    assert seen["stored"].predictions == seen["predictions"].predictions
    assert seen["pattern"].pattern["name"] == seen["learn"].pattern_name
    assert seen["genes"].message == "genes-updated"
    assert seen["gene"].gene_value == 7
    assert seen["percept"].percept_data["strings"] == ["b"]
    assert "emotives" in seen["cognition"].cognition_data
    assert seen["metrics"].observations_processed == 5
    assert seen["metrics"].patterns_learned == 1
    assert seen["status"].stm_length == 2
    assert seen["health"].status == "healthy"
    assert msgspec.json.decode(seen["state"])["time"] == 5
    assert seen["clear_stm"].message == "stm-cleared"
    assert seen["put_state"].stm_length == 2  # the snapshot brought the STM back
    assert seen["restored_stm"].stm == [["a"], ["b"]]
    assert seen["clear_all"].message == "all-cleared"
    assert seen["info"].session_id == session_id
    assert seen["info"].status == "ready"
    assert seen["info"].genes == {"recall_threshold": 0.2}
    assert seen["info"].live_genes["max_predictions"] == 7
    assert seen["keepalive"].idle_expires_at is not None


async def test_every_async_session_method_against_a_real_manager(manager: Manager) -> None:
    async with _client(manager) as client:
        session = await client.create("alice", genes={"recall_threshold": 0.2}, labels={"a": "b"})
        assert session.created is not None
        assert session.created.status == "ready"
        assert session.created.labels == {"a": "b"}
        _check_tour(await _tour(session), session.session_id)

        old = session.token
        new = await session.rotate_token()
        assert new != old
        with pytest.raises(Unauthorized) as refused:
            await client.session(session.session_id, old).stm()
        assert refused.value.status == 401
        assert refused.value.code == "UNAUTHORIZED"

        await session.delete()
        with pytest.raises(SessionExpired) as ended:
            await session.info()
        assert ended.value.status == 410
        assert ended.value.details["reason"] == "deleted"


async def test_every_blocking_session_method_against_a_real_manager(manager: Manager) -> None:
    def run() -> tuple[str, dict[str, Any], str]:
        with Client(manager.base_url, api_key=API_KEY) as client:
            session = client.create("bob", genes={"recall_threshold": 0.2})
            seen = _sync_tour(session)
            old = session.token
            session.rotate_token()
            try:
                client.session(session.session_id, old).stm()
            except Unauthorized as exc:
                refused = exc.code
            session.delete()
            return session.session_id, seen, refused

    session_id, seen, refused = await asyncio.to_thread(run)
    _check_tour(seen, session_id)
    assert refused == "UNAUTHORIZED"


async def test_a_session_used_as_a_context_manager_is_deleted_on_exit(manager: Manager) -> None:
    async with _client(manager) as client:
        async with await client.create("alice") as session:
            await session.observe(["x"])
        with pytest.raises(SessionExpired):
            await session.info()
        # leaving the block of a session already ended is no error
        async with await client.create("alice") as other:
            await other.delete()

    def blocking() -> str:
        with Client(manager.base_url, api_key=API_KEY) as client:
            with client.create("bob") as s:
                s.observe(["y"])
            try:
                s.info()
            except SessionExpired as exc:
                return exc.code
            return "still there"

    assert await asyncio.to_thread(blocking) == "SESSION_EXPIRED"


async def test_errors_are_typed_and_carry_the_code(manager: Manager) -> None:
    async with _client(manager) as client:
        with pytest.raises(UnknownGene) as unknown:
            await client.create("alice", genes={"no_such_gene": 1})
        assert (unknown.value.status, unknown.value.code) == (400, "HTTP_400")
        with pytest.raises(InvalidGene) as invalid:
            await client.create("alice", genes={"recall_threshold": "high"})
        assert invalid.value.code == "INVALID_GENE_VALUE"
        with pytest.raises(ValidationError) as shape:
            await client.create("bad user id with spaces")
        assert shape.value.status == 422

        async with await client.create("alice") as session:
            with pytest.raises(InvalidObservation) as observation:
                await session.observe(vectors=[[1.0, 2.0], [1.0, 2.0, 3.0]])
            assert observation.value.status == 422
            with pytest.raises(InvalidObservation) as sequence:
                await session.observe_sequence(
                    [{"strings": ["a"]}, {"vectors": [[1.0, 2.0], [1.0, 2.0, 3.0]]}]
                )
            assert sequence.value.details["index"] == 1
            with pytest.raises(NotFound) as pattern:
                await session.pattern("PTRN|nothing")
            assert pattern.value.code == "HTTP_404"
            with pytest.raises(UnknownGene):
                await session.update_genes({"no_such_gene": 1})

        with pytest.raises(SessionNotFound):
            await client.session("0" * 32, "whatever").stm()
        with pytest.raises(Unauthorized):
            await AsyncClient(manager.base_url, api_key="wrong").create("alice")


async def test_a_create_over_max_sessions_waits_out_retry_after_then_succeeds(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    """A real 429 (``MAX_SESSIONS``): the client waits ``Retry-After`` and sends again."""
    manager = await start_manager(make_settings(max_sessions=1, reap_interval_s=1))
    async with _client(manager) as client:
        first = await client.create("alice")

        without_retries = _client(manager, retry=Retry(timeout_s=0))
        with pytest.raises(CapacityExceeded) as full:
            await without_retries.create("bob")
        await without_retries.aclose()
        assert full.value.status == 429
        assert full.value.details["limit"] == "MAX_SESSIONS"
        assert full.value.retry_after == 1

        # The slot is freed once the client was refused: it must wait and send again.
        answered: list[int] = []
        freeing: list[asyncio.Task[None]] = []

        async def on_answer(response: httpx.Response) -> None:
            answered.append(response.status_code)
            if response.status_code == 429 and not freeing:
                freeing.append(asyncio.create_task(first.delete()))

        hooked = httpx.AsyncClient(base_url=manager.base_url, event_hooks={"response": [on_answer]})
        async with _client(manager, http=hooked) as retrying:
            started = time.monotonic()
            second = await retrying.create("bob")
            waited = time.monotonic() - started
        await freeing[0]
        assert answered == [429, 201]
        assert waited >= 1.0  # Retry-After: 1
        assert second.created is not None
        assert second.created.status == "ready"
        await client.session(second.session_id, second.token).delete()


async def test_calls_to_a_hibernated_session_are_served_after_its_restore(
    manager: Manager,
) -> None:
    async with _client(manager) as client, await client.create("alice") as session:
        await session.observe(["a"])
        await session.observe(["b"])
        assert await manager.app.state.sessions.hibernate(session.session_id)
        assert (await client.inspect(session.session_id)).status == "hibernated"

        assert (await session.stm()).stm == [["a"], ["b"]]
        assert (await session.info()).status == "ready"


async def test_a_session_not_ready_503_is_retried_after_retry_after(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    """A real ``503 SESSION_NOT_READY`` (a recovery that outlasts the server's wait): the call
    is sent again after ``Retry-After`` and served once the session is ready."""
    manager = await start_manager(make_settings(start_timeout_s=1, stop_timeout_s=1))
    store: SessionStore = manager.app.state.store
    async with _client(manager) as client:
        session = await client.create("alice")
        await session.observe(["a"])
        sid = session.session_id
        record = await store.get(sid)
        assert record is not None
        recovering = await store.transition(
            sid, to=SessionStatus.STARTING, allowed=[SessionStatus.READY], fields={"endpoint": ""}
        )
        assert recovering.ok
        sessions = manager.app.state.sessions

        async def route_forgotten() -> bool:  # the change feed reached the manager's cache
            return sessions.cached_route(sid, f"Bearer {session.token}") is None

        assert await wait_for(route_forgotten, timeout_s=5)

        started = time.monotonic()
        call = asyncio.create_task(session.stm())
        await asyncio.sleep(2.5)  # past the server's 2 s wait: the first answer was a 503
        assert not call.done()
        recovered = await store.transition(
            sid,
            to=SessionStatus.READY,
            allowed=[SessionStatus.STARTING],
            fields={"endpoint": record.endpoint},
        )
        assert recovered.ok
        assert (await call).stm == [["a"]]
        assert time.monotonic() - started >= 2.5
        await session.delete()


async def test_a_create_without_waiting_answers_starting_and_wait_ready_waits_it_out(
    manager: Manager,
) -> None:
    async with _client(manager) as client:
        session = await client.create("alice", wait=False)
        assert session.created is not None
        assert session.created.status == "starting"
        ready = await session.wait_ready()
        assert ready.status == "ready"
        assert (await session.observe(["a"])).time == 1
        await session.delete()


async def test_admin_calls(manager: Manager) -> None:
    async with _client(manager) as client:
        red = await client.create("alice", labels={"team": "red"})
        blue = await client.create("bob", labels={"team": "blue"})
        listed = [s.session_id async for s in client.iter_sessions(page_size=1)]
        assert listed == [red.session_id, blue.session_id]
        page = await client.list_sessions(label="team:blue")
        assert [s.session_id for s in page.sessions] == [blue.session_id]
        assert page.next_cursor is None
        assert (await client.list_sessions(user_id="alice")).sessions[0].user_id == "alice"

        inspected = await client.inspect(red.session_id, live_genes=True)
        assert inspected.backend == "process"
        assert inspected.live_genes is not None
        await asyncio.sleep(1.1)  # deadlines are kept in ms: a keepalive now moves it
        kept = await client.keepalive(red.session_id)
        assert kept.session_id == red.session_id
        assert kept.idle_expires_at is not None
        assert inspected.idle_expires_at is not None
        assert kept.idle_expires_at > inspected.idle_expires_at

        stats = await client.stats()
        assert stats.total == 2
        assert stats.sessions_by_status["ready"] == 2
        report = await client.reap()
        assert report.examined >= 0
        assert await client.processors() == []

        await client.remove(blue.session_id)
        with pytest.raises(SessionExpired):
            await blue.info()
        with pytest.raises(SessionNotFound):
            await client.inspect("f" * 32)
        await red.delete()


def _readme_examples() -> list[str]:
    """The Python blocks of README's "Client and command line" section."""
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    section = readme.split("## Client and command line", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


async def test_the_readme_quick_start_runs_as_written(
    manager: Manager, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocking, asynchronous = _readme_examples()
    monkeypatch.setenv("KATO_SESSIONS_URL", manager.base_url)

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        await asyncio.to_thread(exec, blocking, {"K": API_KEY})
        scope: dict[str, Any] = {"K": API_KEY}
        body = textwrap.indent(asynchronous, "    ")
        exec(f"async def example():\n{body}", scope)  # noqa: S102
        await scope["example"]()
    assert printed.getvalue().split("\n")[0] == "[['world']]"
    assert printed.getvalue().split("\n")[1:4] == ["1", "2", "3"]
    assert (await manager.client.get("/admin/stats", headers=manager.admin)).json()["total"] == 0


class _ReplyDroppingRelay:
    """A loopback relay to the manager that loses the first reply (a replica dying mid-answer).

    The first connection's request reaches the manager; once the manager starts answering,
    both sockets are closed and the client hears nothing. Later connections are relayed whole.
    """

    def __init__(self, upstream: str) -> None:
        host, port = httpx.URL(upstream).host, httpx.URL(upstream).port
        assert port is not None
        self._upstream = (host, port)
        self.connections = 0
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> _ReplyDroppingRelay:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        drop = self.connections == 1
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, lose: bool) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    if lose:
                        return
                    dst.write(data)
                    await dst.drain()

        tasks = [
            asyncio.create_task(pump(reader, up_writer, False)),
            asyncio.create_task(pump(up_reader, writer, drop)),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        for w in (writer, up_writer):
            w.close()


async def test_a_create_whose_reply_was_lost_is_resent_and_makes_one_session(
    manager: Manager,
) -> None:
    async with _ReplyDroppingRelay(manager.base_url) as relay:
        client = AsyncClient(relay.url, api_key=API_KEY, admin_token=ADMIN_TOKEN)
        async with client:
            session = await client.create("carol")
            assert relay.connections >= 2, "the first reply was dropped, the create resent"
            assert (await session.observe(["x"])).time == 1  # the token of the answer works
            listed = await client.list_sessions(user_id="carol")
            assert [s.session_id for s in listed.sessions] == [session.session_id]
            await session.delete()


async def test_the_same_idempotency_key_names_one_session(manager: Manager) -> None:
    async with _client(manager) as client:
        first = await client.create("dave", idempotency_key="order-42")
        again = await client.create("dave", idempotency_key="order-42")
        other = await client.create("dave")
        assert again.session_id == first.session_id
        assert other.session_id != first.session_id
        await again.delete()
        await other.delete()
