"""Sessions on the ``mongodb`` knowledge base: what a session learned outlives it (per kb_id)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pymongo import MongoClient

from processor_image.storage.mongodb import database_name
from tests.mongo_server import mongo_server
from tests.support.manager import SettingsFactory, StartManager, auth

pytestmark = pytest.mark.mongo


@pytest.fixture(name="mongo_url", scope="module")
def fx_mongo_url() -> Iterator[str]:
    with mongo_server() as url:
        yield url


async def test_knowledge_learned_in_one_session_serves_the_next_on_the_same_kb(
    start_manager: StartManager, make_settings: SettingsFactory, mongo_url: str
) -> None:
    manager = await start_manager(make_settings(processor_storage="mongodb", mongo_url=mongo_url))
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
