"""MongoDB keeps every prediction record (the reference), looked up through an index, and can
let them expire with a TTL index (``PREDICTIONS_TTL_S``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from msgspec.json import encode
from pymongo.errors import OperationFailure

from processor_image.storage.mongodb import (
    PREDICTIONS_LOOKUP_INDEX,
    PREDICTIONS_TTL_INDEX,
    MongoKnowledgeBase,
    database_name,
)
from tests.support.knowledge_bases import Client, new_kb_id

pytestmark = pytest.mark.mongo


@pytest.fixture(name="kb_id")
def fx_kb_id(mongo_client: Client) -> Iterator[str]:
    kb_id = new_kb_id()
    yield kb_id
    mongo_client.drop_database(database_name(kb_id))


def open_kb(mongo_client: Client, kb_id: str, ttl: int = 0) -> MongoKnowledgeBase:
    return MongoKnowledgeBase("unused://", kb_id, client=mongo_client, predictions_ttl_s=ttl)


def indexes(mongo_client: Client, kb_id: str) -> dict[str, dict[str, object]]:
    info: dict[str, dict[str, object]] = mongo_client[database_name(kb_id)][
        "predictions_kb"
    ].index_information()
    return info


def test_lookups_have_an_index_on_the_id_then_the_storing_order(
    mongo_client: Client, kb_id: str
) -> None:
    open_kb(mongo_client, kb_id).close()
    lookup = indexes(mongo_client, kb_id)[PREDICTIONS_LOOKUP_INDEX]
    assert lookup["key"] == [("unique_id", 1), ("_id", 1)]
    assert PREDICTIONS_TTL_INDEX not in indexes(mongo_client, kb_id)  # no TTL by default


def test_every_record_is_kept_without_a_ttl(mongo_client: Client, kb_id: str) -> None:
    kb = open_kb(mongo_client, kb_id)
    for n in range(1500):  # past the memory store's default bound: MongoDB keeps them all
        kb.store_predictions(f"u{n}", encode([{"name": f"p{n}"}]))
    assert kb.find_predictions("u0") == [{"name": "p0"}]
    assert len(kb.dump().predictions) == 1500


def test_the_ttl_index_follows_the_setting(mongo_client: Client, kb_id: str) -> None:
    open_kb(mongo_client, kb_id, ttl=3600).close()
    assert indexes(mongo_client, kb_id)[PREDICTIONS_TTL_INDEX]["expireAfterSeconds"] == 3600
    open_kb(mongo_client, kb_id, ttl=60).close()  # changed in place (collMod)
    assert indexes(mongo_client, kb_id)[PREDICTIONS_TTL_INDEX]["expireAfterSeconds"] == 60
    open_kb(mongo_client, kb_id, ttl=0).close()
    assert PREDICTIONS_TTL_INDEX not in indexes(mongo_client, kb_id)


def test_records_older_than_the_ttl_expire(mongo_client: Client, kb_id: str) -> None:
    kb = open_kb(mongo_client, kb_id, ttl=3600)
    kb.store_predictions("old", encode([{"name": "a"}]))
    kb.store_predictions("new", encode([{"name": "b"}]))
    collection = mongo_client[database_name(kb_id)]["predictions_kb"]
    collection.update_one(
        {"unique_id": "old"}, {"$set": {"stored_at": datetime(2000, 1, 1, tzinfo=UTC)}}
    )
    try:  # SecantusDB runs its TTL monitor on demand; MongoDB's runs every 60 s
        mongo_client.admin.command("secantusAdmin.pruneTtl")
    except OperationFailure:
        pytest.skip("the server cannot run its TTL monitor on demand (not SecantusDB)")
    assert kb.find_predictions("old") is None
    assert kb.find_predictions("new") == [{"name": "b"}]


def test_a_negative_ttl_is_refused(mongo_client: Client, kb_id: str) -> None:
    with pytest.raises(ValueError, match="predictions_ttl_s"):
        open_kb(mongo_client, kb_id, ttl=-1)
