"""Fixtures running every test against each knowledge-base store (memory and a real MongoDB)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pymongo import MongoClient

from processor_image.engine.knowledge import KnowledgeBase
from processor_image.storage import MemoryKnowledgeBase
from processor_image.storage.mongodb import MongoKnowledgeBase, database_name
from tests.mongo_server import mongo_server
from tests.support.knowledge_bases import Client, MakeKb, new_kb_id


@pytest.fixture(name="mongo_url", scope="session")
def fx_mongo_url() -> Iterator[str]:
    with mongo_server() as url:
        yield url


@pytest.fixture(name="mongo_client", scope="session")
def fx_mongo_client(mongo_url: str) -> Iterator[Client]:
    client: Client = MongoClient(mongo_url)
    yield client
    client.close()


@pytest.fixture(name="storage", params=["memory", pytest.param("mongodb", marks=pytest.mark.mongo)])
def fx_storage(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(name="make_kb")
def fx_make_kb(storage: str, request: pytest.FixtureRequest) -> Iterator[MakeKb]:
    """``make_kb(kb_id=None)``: a store of the parametrised kind; databases dropped afterwards."""
    opened: list[KnowledgeBase] = []
    kb_ids: set[str] = set()
    client: Client | None = None
    if storage == "mongodb":
        client = request.getfixturevalue("mongo_client")

    def make(kb_id: str | None = None) -> KnowledgeBase:
        kb_id = kb_id or new_kb_id()
        kb_ids.add(kb_id)
        kb: KnowledgeBase
        if client is None:
            kb = MemoryKnowledgeBase()
        else:
            kb = MongoKnowledgeBase("unused://", kb_id, client=client)
        opened.append(kb)
        return kb

    yield make
    for kb in opened:
        kb.close()
    if client is not None:
        for kb_id in kb_ids:
            client.drop_database(database_name(kb_id))


@pytest.fixture(name="kb")
def fx_kb(make_kb: MakeKb) -> KnowledgeBase:
    return make_kb()
