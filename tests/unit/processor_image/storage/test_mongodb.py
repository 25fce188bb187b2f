"""MongoDB-specific behaviour: document shapes, indexes, sharing, restarts, errors."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from msgspec.json import encode

from processor_image.engine.knowledge import SymbolStats, Totals
from processor_image.engine.naming import pattern_hash
from processor_image.storage import StorageError, open_knowledge_base
from processor_image.storage.mongodb import MongoKnowledgeBase, database_name
from processor_image.storage.ops import OpClock
from tests.support.knowledge_bases import Client, new_kb_id

pytestmark = pytest.mark.mongo


@pytest.fixture(name="db_cleanup")
def fx_db_cleanup(mongo_client: Client) -> Iterator[list[str]]:
    kb_ids: list[str] = []
    yield kb_ids
    for kb_id in kb_ids:
        mongo_client.drop_database(database_name(kb_id))


@pytest.fixture(name="mongo_kb")
def fx_mongo_kb(mongo_url: str, db_cleanup: list[str]) -> Iterator[MongoKnowledgeBase]:
    kb_id = new_kb_id()
    db_cleanup.append(kb_id)
    kb = MongoKnowledgeBase(mongo_url, kb_id)
    yield kb
    kb.close()


def raw(client: Client, kb: MongoKnowledgeBase, collection: str) -> list[dict[str, Any]]:
    return list(client[kb.database_name][collection].find({}, {"_id": 0}))


def test_start_creates_collections_indexes_and_one_zero_totals_document(
    mongo_kb: MongoKnowledgeBase, mongo_client: Client
) -> None:
    db = mongo_client[mongo_kb.database_name]
    expected = {"patterns_kb", "symbols_kb", "metadata", "predictions_kb", "associative_action_kb"}
    assert expected <= set(db.list_collection_names())

    def index_keys(collection: str) -> dict[str, bool]:
        info = db[collection].index_information()
        return {spec["key"][0][0]: bool(spec.get("unique")) for spec in info.values()}

    assert index_keys("patterns_kb")["name"] is True
    assert index_keys("symbols_kb")["name"] is True
    assert index_keys("metadata")["class"] is True
    assert "unique_id" in index_keys("predictions_kb")
    assert raw(mongo_client, mongo_kb, "metadata") == [
        {
            "class": "totals",
            "total_pattern_frequencies": 0,
            "total_symbol_frequencies": 0,
            "total_symbols_in_patterns_frequencies": 0,
        }
    ]


def test_documents_have_the_spec_shapes_with_emotives_always_a_list(
    mongo_kb: MongoKnowledgeBase, mongo_client: Client
) -> None:
    mongo_kb.learn(pattern_hash([["a"], ["b"]]), [["a"], ["b"]], None, 5)
    mongo_kb.learn(pattern_hash([["a"], ["c"]]), [["a"], ["c"]], {"joy": 0.5}, 5)
    mongo_kb.store_predictions("u1", encode([{"name": "aa"}]))
    patterns = sorted(raw(mongo_client, mongo_kb, "patterns_kb"), key=lambda d: d["pattern_data"])
    assert patterns == [
        {
            "name": pattern_hash([["a"], ["b"]]),
            "pattern_data": [["a"], ["b"]],
            "length": 2,
            "frequency": 1,
            "emotives": [],
        },
        {
            "name": pattern_hash([["a"], ["c"]]),
            "pattern_data": [["a"], ["c"]],
            "length": 2,
            "frequency": 1,
            "emotives": [{"joy": 0.5}],
        },
    ]
    symbols = {d["name"]: d for d in raw(mongo_client, mongo_kb, "symbols_kb")}
    assert symbols["b"] == {"name": "b", "frequency": 1, "pattern_member_frequency": 1}
    assert symbols["a"] == {
        "name": "a",
        "frequency": 2,
        "pattern_member_frequency": 2,
        "emotives": {"joy": 0.5},
    }
    [record] = raw(mongo_client, mongo_kb, "predictions_kb")
    assert isinstance(record.pop("stored_at"), datetime)  # what a TTL index expires by
    assert record == {"unique_id": "u1", "predictions": [{"name": "aa"}]}
    assert len(raw(mongo_client, mongo_kb, "metadata")) == 1


def test_reopening_a_kb_id_keeps_its_knowledge(mongo_url: str, db_cleanup: list[str]) -> None:
    kb_id = new_kb_id()
    db_cleanup.append(kb_id)
    first = MongoKnowledgeBase(mongo_url, kb_id)
    first.learn(pattern_hash([["a"], ["b"]]), [["a"], ["b"]], None, 5)
    first.close()
    reopened = MongoKnowledgeBase(mongo_url, kb_id)
    try:
        assert reopened.pattern_count() == 1
        assert reopened.totals().total_pattern_frequencies == 1
    finally:
        reopened.close()


@pytest.mark.parametrize("kb_id", ["Mixed.Case/$id", "x" * 100, "admin"])
def test_unsafe_kb_ids_work_end_to_end(
    kb_id: str, mongo_url: str, mongo_client: Client, db_cleanup: list[str]
) -> None:
    db_cleanup.append(kb_id)
    kb = MongoKnowledgeBase(mongo_url, kb_id)
    try:
        kb.learn(pattern_hash([["a"], ["b"]]), [["a"], ["b"]], None, 5)
        kb.clear()
        kb.learn(pattern_hash([["a"], ["b"]]), [["a"], ["b"]], None, 5)
        assert kb.pattern_count() == 1
        assert mongo_client["admin"]["patterns_kb"].estimated_document_count() == 0
    finally:
        kb.close()


def test_concurrent_learners_sharing_a_kb_id_count_every_learn(
    mongo_url: str, db_cleanup: list[str]
) -> None:
    kb_id = new_kb_id()
    db_cleanup.append(kb_id)
    stores = [MongoKnowledgeBase(mongo_url, kb_id) for _ in range(4)]
    pattern = [["shared"], ["pattern"]]
    new: list[bool] = []
    barrier = threading.Barrier(len(stores))

    def work(kb: MongoKnowledgeBase) -> None:
        barrier.wait()
        for _ in range(5):
            new.append(kb.learn(pattern_hash(pattern), pattern, {"joy": 1.0}, 100))

    threads = [threading.Thread(target=work, args=(kb,)) for kb in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert new.count(True) == 1
        record = stores[0].get_pattern(pattern_hash(pattern))
        assert record is not None
        assert record.frequency == 20
        assert len(record.emotives) == 20
        assert stores[1].totals() == Totals(
            total_pattern_frequencies=20,
            total_symbol_frequencies=40,
            total_symbols_in_patterns_frequencies=40,
        )
        assert stores[2].symbol_stats(["shared"])["shared"].emotives == {"joy": 20.0}
    finally:
        for kb in stores:
            kb.close()


def test_close_leaves_an_injected_client_open(mongo_client: Client, db_cleanup: list[str]) -> None:
    kb_id = new_kb_id()
    db_cleanup.append(kb_id)
    MongoKnowledgeBase("unused://", kb_id, client=mongo_client).close()
    assert mongo_client.admin.command("ping")["ok"] == 1.0


def test_close_closes_a_client_the_store_created(mongo_url: str, db_cleanup: list[str]) -> None:
    kb_id = new_kb_id()
    db_cleanup.append(kb_id)
    kb = MongoKnowledgeBase(mongo_url, kb_id)
    kb.close()
    with pytest.raises(StorageError, match="MongoDB failed"):
        kb.pattern_count()


def test_unreachable_server_raises_storage_error_without_the_url() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"mongodb://user:secret@127.0.0.1:{port}/?serverSelectionTimeoutMS=300"
    with pytest.raises(StorageError) as caught:
        MongoKnowledgeBase(url, "p1")
    assert "secret" not in caught.value.message


def test_open_knowledge_base_builds_the_named_store(mongo_url: str, db_cleanup: list[str]) -> None:
    kb_id = new_kb_id()
    db_cleanup.append(kb_id)
    kb = open_knowledge_base("mongodb", kb_id, mongo_url)
    try:
        assert isinstance(kb, MongoKnowledgeBase)
        assert kb.persistent is True
    finally:
        kb.close()


def test_a_replayed_learn_counts_once_and_only_against_its_own_processors_marks(
    mongo_url: str, db_cleanup: list[str]
) -> None:
    """Replays skip what their processor already applied; another processor's marks, a
    pattern or symbol never seen, and every normal learn still count."""
    kb_id = new_kb_id()
    db_cleanup.append(kb_id)
    clocks = {owner: OpClock(owner) for owner in ("a.1", "b")}  # a dot in an id is escaped
    a, b = (MongoKnowledgeBase(mongo_url, kb_id, ops=clock) for clock in clocks.values())
    pattern, fresh = [["x"], ["y"]], [["x"], ["z"]]
    try:
        clocks["a.1"].begin(1, replay=False)
        assert a.learn(pattern_hash(pattern), pattern, None, 5)
        clocks["a.1"].begin(1, replay=True)
        assert not a.learn(pattern_hash(pattern), pattern, None, 5)
        assert a.totals().total_pattern_frequencies == 1
        assert a.symbol_stats(["x"])["x"].frequency == 1

        clocks["b"].begin(1, replay=True)  # b's own mark is not there: its learn counts
        assert not b.learn(pattern_hash(pattern), pattern, None, 5)
        clocks["a.1"].begin(2, replay=True)  # never applied by a: counts, inserts z
        assert a.learn(pattern_hash(fresh), fresh, None, 5)
        clocks["a.1"].begin(3, replay=False)
        a.learn(pattern_hash(pattern), pattern, None, 5)

        record = a.get_pattern(pattern_hash(pattern))
        assert record is not None
        assert record.frequency == 3
        assert a.symbol_stats(["x", "z"]) == {
            "x": SymbolStats(name="x", frequency=4, pattern_member_frequency=4),
            "z": SymbolStats(name="z", frequency=1, pattern_member_frequency=1),
        }
        assert a.totals().total_pattern_frequencies == 4
    finally:
        a.close()
        b.close()
