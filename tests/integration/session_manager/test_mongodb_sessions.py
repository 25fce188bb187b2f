"""Sessions on the ``mongodb`` knowledge base: what a session learned outlives it (per kb_id)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import MongoClient

from processor_image.storage.mongodb import database_name
from tests.mongo_server import mongo_server
from tests.support.chaos import Acked, control_state
from tests.support.manager import SettingsFactory, StartManager, auth, status_of

pytestmark = pytest.mark.mongo


@pytest.fixture(name="mongo_url", scope="module")
def fx_mongo_url() -> Iterator[str]:
    with mongo_server() as url:
        yield url


@pytest.mark.parametrize("pool", [0, 1], ids=["cold", "pooled"])
async def test_knowledge_learned_in_one_session_serves_the_next_on_the_same_kb(
    start_manager: StartManager, make_settings: SettingsFactory, mongo_url: str, pool: int
) -> None:
    """Pooled: processors claimed from the warm pool open (and load) the kb at their claim."""
    manager = await start_manager(
        make_settings(processor_storage="mongodb", mongo_url=mongo_url, warm_pool_size=pool)
    )
    first = await manager.create(kb_id="team-kb")
    for symbol in ("hello", "world", "test"):
        await manager.client.post(
            f"/session/{first['session_id']}/observe",
            json={"strings": [symbol]},
            headers=auth(first),
        )
    await manager.client.post(f"/session/{first['session_id']}/learn", headers=auth(first))
    await manager.client.delete(f"/session/{first['session_id']}", headers=auth(first))

    second = await manager.create(kb_id="team-kb")
    other = await manager.create(kb_id="other-kb")
    for session in (second, other):
        for symbol in ("hello", "world"):
            await manager.client.post(
                f"/session/{session['session_id']}/observe",
                json={"strings": [symbol]},
                headers=auth(session),
            )
    found = await manager.client.get(
        f"/session/{second['session_id']}/predictions", headers=auth(second)
    )
    assert [p["future"] for p in found.json()["predictions"]] == [[["test"]]]
    none = await manager.client.get(
        f"/session/{other['session_id']}/predictions", headers=auth(other)
    )
    assert none.json()["predictions"] == []
    if pool:
        stats = (await manager.client.get("/admin/stats", headers=manager.admin)).json()
        assert stats["warm_pool"]["hits"] >= 1


async def test_a_private_knowledge_base_is_dropped_when_its_session_ends(
    start_manager: StartManager, make_settings: SettingsFactory, mongo_url: str
) -> None:
    manager = await start_manager(make_settings(processor_storage="mongodb", mongo_url=mongo_url))
    private = await manager.create()
    shared = await manager.create(kb_id="kept-kb")
    for session in (private, shared):
        for symbol in ("a", "b"):
            await manager.client.post(
                f"/session/{session['session_id']}/observe",
                json={"strings": [symbol]},
                headers=auth(session),
            )
        await manager.client.post(f"/session/{session['session_id']}/learn", headers=auth(session))
    client: MongoClient[dict[str, object]] = MongoClient(mongo_url)
    try:
        names = set(client.list_database_names())
        assert {database_name(private["kb_id"]), "kept-kb"} <= names
        for session in (private, shared):
            await manager.client.delete(f"/session/{session['session_id']}", headers=auth(session))
        names = set(client.list_database_names())
        assert database_name(private["kb_id"]) not in names
        assert "kept-kb" in names
    finally:
        client.close()


async def test_a_recovered_clear_all_keeps_what_another_session_learned_after_it(
    start_manager: StartManager, make_settings: SettingsFactory, mongo_url: str
) -> None:
    """A learns and clears all; B, on the same kb, learns after. A's processor is SIGKILLed and
    recovered by replaying its journal: B's pattern is still there, A's pattern from before
    the clear does not come back, and A's state equals a control's that never crashed."""
    manager = await start_manager(
        make_settings(processor_storage="mongodb", mongo_url=mongo_url, checkpoint_interval_s=3600)
    )
    a = await manager.create(kb_id="cleared-kb")
    b = await manager.create(kb_id="cleared-kb")
    acked: list[Acked] = []

    async def send(session: dict[str, Any], path: str, body: dict[str, Any]) -> Any:
        reply = await manager.client.post(
            f"/session/{session['session_id']}{path}", json=body, headers=auth(session)
        )
        assert reply.status_code == 200, reply.text
        if session is a:
            unique_id = reply.json().get("unique_id")
            sent = {**body, "unique_id": unique_id} if unique_id else body
            acked.append(("POST", path, json.dumps(sent).encode()))
        return reply.json()

    for word in ("before", "clear"):
        await send(a, "/observe", {"strings": [word]})
    gone = (await send(a, "/learn", {}))["pattern_name"]
    await send(a, "/clear-all", {})
    for word in ("after", "clear"):
        await send(a, "/observe", {"strings": [word], "emotives": {"joy": 0.5}})
    ours = (await send(a, "/learn", {}))["pattern_name"]
    for word in ("learned", "elsewhere"):
        await send(b, "/observe", {"strings": [word]})
    theirs = (await send(b, "/learn", {}))["pattern_name"]
    await send(a, "/observe", {"strings": ["after"]})

    pid = int((await status_of(manager, a))["ref"])
    os.killpg(pid, signal.SIGKILL)
    recovered = await manager.client.get(f"/session/{a['session_id']}/state", headers=auth(a))
    assert recovered.status_code == 200, recovered.text
    assert int((await status_of(manager, a))["ref"]) != pid

    with MongoClient(mongo_url) as client:
        patterns = {
            "PTRN|" + doc["name"]: doc["frequency"]
            for doc in client[database_name("cleared-kb")]["patterns_kb"].find()
        }
    assert patterns == {ours: 1, theirs: 1}
    assert gone not in patterns
    control = await asyncio.to_thread(control_state, a["session_id"], acked)
    assert comparable(recovered.json()) == comparable(control)


def comparable(state: dict[str, Any]) -> dict[str, Any]:
    """A state minus its predictions (a replay observes against later knowledge), its
    knowledge (compared in MongoDB) and the kb_id in its manifest."""
    kept = {k: v for k, v in state.items() if "prediction" not in k and k != "knowledge"}
    kept["manifest"] = {k: v for k, v in state["manifest"].items() if k != "kb_id"}
    return kept
