"""The MongoDB knowledge base: one database per ``kb_id``, document shapes as spec §8.

Differences from the reference, on purpose:

* ``patterns_kb.emotives`` is always a list (decision Q4), so a pattern first learned without
  emotives can gain them later.
* Every pattern, symbol and totals document keeps ``ops.<processor id>``: the highest op
  (``storage.ops``) that processor applied to it. A request replayed after a crash updates a
  document only while its op is above that mark, so a shared knowledge base never counts a
  replayed learn twice (README, "Durability"). Every learn and clear writes the totals
  document, so its mark is the processor's highest op overall; ``clear`` carries every
  processor's mark over the drop (its own raised to the clear's op). A replayed request
  whose seq is at or below that mark was applied already, and anything it wrote is either
  still there or was removed by a later clear: it writes nothing (a replayed ``clear-all``
  does not wipe what other sessions learned since, nor does a replayed learn come back).
* Emotive names (keys of ``emotives`` in patterns, symbols and stored predictions) are
  stored with ``%``, ``.``, ``$`` and NUL percent-escaped, and ``""`` as ``"%"``, because
  MongoDB reads a dot in an update path as nesting; reads undo it, so callers see exactly the
  names they wrote.
* ``predictions_kb`` records grow without bound, as in the reference (spec §4.10), but carry
  ``stored_at`` (a UTC date) so that ``PREDICTIONS_TTL_S`` can let MongoDB expire them with a
  TTL index; lookups use the index ``(unique_id, _id)``, which serves the filter and the
  "first stored" order at once.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import msgspec
from pymongo import ASCENDING, MongoClient, UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError, PyMongoError

from processor_image.engine.knowledge import (
    KnowledgeDump,
    PatternRecord,
    PredictionRecord,
    SymbolStats,
    Totals,
)
from processor_image.storage.errors import StorageError
from processor_image.storage.naming import database_name
from processor_image.storage.ops import OpClock

__all__ = (
    "PREDICTIONS_LOOKUP_INDEX",
    "PREDICTIONS_TTL_INDEX",
    "MongoKnowledgeBase",
    "database_name",
)

Document = dict[str, Any]

_SERVER_SELECTION_TIMEOUT_MS = 10_000
_TOTALS = {"class": "totals"}
_ZERO_TOTALS = {name: 0 for name in Totals.__struct_fields__}
_UNSAFE_KEY_CHARS = re.compile(r"[%.$\x00]")
_KEY_ESCAPES = str.maketrans({"%": "%25", ".": "%2E", "$": "%24", "\x00": "%00"})
_DUPLICATE_KEY = 11000
_decode = msgspec.json.Decoder(list[dict[str, Any]]).decode
"""A stored record arrives as the engine's JSON; MongoDB keeps it as documents."""
PREDICTIONS_LOOKUP_INDEX = "unique_id_first"
"""``(unique_id, _id)`` on ``predictions_kb``: a lookup by id, first stored first."""
PREDICTIONS_TTL_INDEX = "stored_at_ttl"
"""The TTL index on ``predictions_kb.stored_at``, present only while a TTL is configured."""


def _escape_key(key: str) -> str:
    return key.translate(_KEY_ESCAPES) if key else "%"


def _unescape_key(key: str) -> str:
    if "%" not in key:
        return key
    return unquote(key) if key != "%" else ""


def _escaped(mapping: dict[str, Any]) -> dict[str, Any]:
    """``mapping`` with its keys escaped; the same object when none needs it (the usual case)."""
    if "" not in mapping and not _UNSAFE_KEY_CHARS.search("".join(mapping)):
        return mapping
    return {_escape_key(key): value for key, value in mapping.items()}


def _unescaped(mapping: dict[str, Any]) -> dict[str, Any]:
    if "%" not in "".join(mapping):
        return mapping
    return {_unescape_key(key): value for key, value in mapping.items()}


def _escaped_prediction(prediction: dict[str, Any]) -> dict[str, Any]:
    """Escape the keys of a prediction and of its dict fields (``emotives``) for storing."""
    nested = {key: _escaped(value) for key, value in prediction.items() if isinstance(value, dict)}
    return _escaped({**prediction, **nested} if nested else prediction)


def _unescaped_prediction(prediction: dict[str, Any]) -> dict[str, Any]:
    nested = {
        key: _unescaped(value) for key, value in prediction.items() if isinstance(value, dict)
    }
    return _unescaped({**prediction, **nested} if nested else prediction)


def _pattern(document: Document) -> PatternRecord:
    return PatternRecord(
        name=document["name"],
        pattern_data=document["pattern_data"],
        length=document["length"],
        frequency=document["frequency"],
        emotives=[_unescaped(entry) for entry in document["emotives"]],
    )


def _symbol(document: Document) -> SymbolStats:
    return SymbolStats(
        name=document["name"],
        frequency=document["frequency"],
        pattern_member_frequency=document["pattern_member_frequency"],
        emotives=_unescaped(document.get("emotives", {})),
    )


@contextmanager
def _storage_errors(action: str) -> Iterator[None]:
    """Turn every pymongo failure into a StorageError naming what was being done."""
    try:
        yield
    except PyMongoError as error:
        raise StorageError(f"MongoDB failed to {action}: {error}") from error


def _upsert(collection: Collection[Document], operations: list[UpdateOne]) -> int:
    """Run upserts as one unordered batch; returns how many inserted a document.

    Two processors sharing a ``kb_id`` may race to insert the same name: MongoDB (4.2+)
    retries such an upsert itself because its filter is an equality on a unique index.
    """
    return collection.bulk_write(operations, ordered=False).upserted_count


Update = tuple[Document, Document]
"""A filter and an update document."""


def _upsert_once(collection: Collection[Document], updates: list[Update]) -> int:
    """Upsert ``updates`` whose filters carry an op mark; returns how many inserted.

    Such a filter is not a plain equality on the unique key, so an upsert whose document exists
    but is already at or above the op tries to insert a second one and fails with a duplicate
    key; so does one that lost an insert race to another processor. Either way the document
    now exists: the same update without upsert applies it when it is still due.
    """
    try:
        return _upsert(collection, [UpdateOne(f, u, upsert=True) for f, u in updates])
    except BulkWriteError as error:
        failed = error.details.get("writeErrors", [])
        if any(entry.get("code") != _DUPLICATE_KEY for entry in failed):
            raise
        again = [UpdateOne(*updates[entry["index"]]) for entry in failed]
        collection.bulk_write(again, ordered=False)
        return int(error.details.get("nUpserted", 0))


def _connect(url: str) -> MongoClient[Document]:
    """A client that gives up after 10 s unless the URL sets its own server-selection timeout."""
    options: dict[str, Any] = {"appname": "kato-processor"}
    if "serverselectiontimeoutms" not in url.lower():
        options["serverSelectionTimeoutMS"] = _SERVER_SELECTION_TIMEOUT_MS
    return MongoClient(url, **options)


class MongoKnowledgeBase:
    """The knowledge of one ``kb_id`` in its own MongoDB database; it survives restarts."""

    def __init__(
        self,
        url: str,
        kb_id: str,
        *,
        client: MongoClient[Document] | None = None,
        ops: OpClock | None = None,
        predictions_ttl_s: int = 0,
    ) -> None:
        """Connect (or use ``client``), then create collections, indexes and zero totals.

        ``ops`` is the request clock of the processor writing through this store; without one
        writes are not marked and a replay would apply them again. ``predictions_ttl_s`` > 0
        lets MongoDB delete stored predictions that much after they were stored; 0 keeps
        them (the reference). The last store opened on a ``kb_id`` sets it for all.
        """
        if predictions_ttl_s < 0:
            raise ValueError("predictions_ttl_s must be >= 0 (0: no expiry)")
        self._ops = ops
        self._predictions_ttl_s = predictions_ttl_s
        self._owns_client = client is None
        with _storage_errors("connect"):  # the URL may hold a password: never echo it
            self._client: MongoClient[Document] = client if client is not None else _connect(url)
        self.kb_id = kb_id
        self.database_name = database_name(kb_id)
        self._db: Database[Document] = self._client[self.database_name]
        self._patterns = self._db["patterns_kb"]
        self._symbols = self._db["symbols_kb"]
        self._metadata = self._db["metadata"]
        self._predictions = self._db["predictions_kb"]
        try:
            self._prepare()
        except BaseException:
            self.close()
            raise

    def _prepare(self) -> None:
        with _storage_errors(f"prepare database {self.database_name!r}"):
            self._patterns.create_index("name", unique=True)
            self._symbols.create_index("name", unique=True)
            self._predictions.create_index(
                [("unique_id", ASCENDING), ("_id", ASCENDING)], name=PREDICTIONS_LOOKUP_INDEX
            )
            self._prepare_predictions_ttl()
            self._metadata.create_index("class", unique=True)
            if "associative_action_kb" not in self._db.list_collection_names():
                self._db.create_collection("associative_action_kb", check_exists=False)
            _upsert(
                self._metadata, [UpdateOne(_TOTALS, {"$setOnInsert": _ZERO_TOTALS}, upsert=True)]
            )

    def _prepare_predictions_ttl(self) -> None:
        """Make the TTL index on ``stored_at`` match the setting: absent, created or changed."""
        ttl = self._predictions_ttl_s
        current = self._predictions.index_information().get(PREDICTIONS_TTL_INDEX)
        if current is None:
            if ttl > 0:
                self._predictions.create_index(
                    "stored_at", name=PREDICTIONS_TTL_INDEX, expireAfterSeconds=ttl
                )
        elif ttl == 0:
            self._predictions.drop_index(PREDICTIONS_TTL_INDEX)
        elif current.get("expireAfterSeconds") != ttl:
            self._db.command(
                "collMod",
                self._predictions.name,
                index={"name": PREDICTIONS_TTL_INDEX, "expireAfterSeconds": ttl},
            )

    @property
    def persistent(self) -> bool:
        """The data lives in MongoDB, so snapshots need not carry it."""
        return True

    def learn(
        self,
        name: str,
        pattern_data: list[list[str]],
        emotives: Mapping[str, float] | None,
        persistence: int,
    ) -> bool:
        """Record one learn: one write batch per collection; True when the pattern is new."""
        flat = [symbol for event in pattern_data for symbol in event]
        counts = Counter(flat)
        pattern: Document = {
            "$inc": {"frequency": 1},
            "$setOnInsert": {"pattern_data": pattern_data, "length": len(flat)},
        }
        symbol_inc: dict[str, float] = {}
        if emotives is None:
            pattern["$setOnInsert"]["emotives"] = []
        else:
            stored = _escaped(dict(emotives))
            window = -max(persistence, 0)
            pattern["$push"] = {"emotives": {"$each": [stored], "$slice": window}}
            symbol_inc = {f"emotives.{key}": value for key, value in stored.items()}
        symbols = [
            (
                {"name": symbol},
                {"$inc": {"frequency": count, "pattern_member_frequency": 1, **symbol_inc}},
            )
            for symbol, count in counts.items()
        ]
        totals = {
            "total_pattern_frequencies": 1,
            "total_symbol_frequencies": len(flat),
            "total_symbols_in_patterns_frequencies": len(counts),
        }
        writes = [
            (self._patterns, [({"name": name}, pattern)]),
            (self._symbols, symbols),
            (self._metadata, [(dict(_TOTALS), {"$inc": totals})]),
        ]
        op = None if self._ops is None else self._ops.next_op()
        with _storage_errors(f"learn pattern {name}"):
            if self._request_applied():
                return False
            inserted = [self._write(collection, updates, op) for collection, updates in writes]
        return inserted[0] > 0

    def _request_applied(self) -> bool:
        """Whether the request being replayed, or a later one, already wrote to this store.

        The totals document's mark is this processor's highest op (every learn and clear
        writes it, a clear by anyone carries it over), so a replayed request at or below it
        finds its effects in place, or removed by a clear that came after it.
        """
        if self._ops is None or not self._ops.replay:
            return False
        owner = _escape_key(self._ops.owner)
        document = self._metadata.find_one(_TOTALS, {"_id": 0, f"ops.{owner}": 1}) or {}
        applied = document.get("ops", {}).get(owner, 0)
        return isinstance(applied, int) and applied >= self._ops.first_op

    def _write(
        self, collection: Collection[Document], updates: list[Update], op: int | None
    ) -> int:
        """Upsert ``updates`` marked with ``op``; a replay skips documents already at ``op``."""
        if not updates:
            return 0
        if self._ops is None or op is None:
            return _upsert(collection, [UpdateOne(f, u, upsert=True) for f, u in updates])
        mark = f"ops.{_escape_key(self._ops.owner)}"
        marked = [(f, {**u, "$max": {mark: op}}) for f, u in updates]
        if not self._ops.replay:
            return _upsert(collection, [UpdateOne(f, u, upsert=True) for f, u in marked])
        due = {mark: {"$not": {"$gte": op}}}
        return _upsert_once(collection, [({**f, **due}, u) for f, u in marked])

    def get_pattern(self, name: str) -> PatternRecord | None:
        """The pattern with this bare hash, or None."""
        with _storage_errors(f"read pattern {name}"):
            document = self._patterns.find_one({"name": name}, {"_id": 0})
        return None if document is None else _pattern(document)

    def get_patterns(self, names: Iterable[str]) -> dict[str, PatternRecord]:
        """The stored ones among ``names``, in one query."""
        with _storage_errors("read patterns"):
            found = self._patterns.find({"name": {"$in": list(names)}}, {"_id": 0})
            return {record.name: record for record in map(_pattern, found)}

    def pattern_records(self, names: Iterable[str]) -> Mapping[str, PatternRecord]:
        """Exactly ``get_patterns``."""
        return self.get_patterns(names)

    def iter_patterns(self) -> Iterator[PatternRecord]:
        """Every stored pattern, streamed from one cursor."""
        with _storage_errors("read patterns"):
            for document in self._patterns.find({}, {"_id": 0}):
                yield _pattern(document)

    def pattern_count(self) -> int:
        """Number of pattern documents (collection metadata, O(1) on MongoDB)."""
        with _storage_errors("count patterns"):
            return self._patterns.estimated_document_count()

    def symbol_stats(self, names: Iterable[str]) -> dict[str, SymbolStats]:
        """Statistics of the stored ones among ``names``, in one query."""
        with _storage_errors("read symbols"):
            found = self._symbols.find({"name": {"$in": list(names)}}, {"_id": 0})
            return {stats.name: stats for stats in map(_symbol, found)}

    def member_frequencies(self, names: Iterable[str]) -> Mapping[str, int]:
        """``pattern_member_frequency`` of the stored ones among ``names``, in one query."""
        with _storage_errors("read symbols"):
            found = self._symbols.find(
                {"name": {"$in": list(names)}}, {"_id": 0, "name": 1, "pattern_member_frequency": 1}
            )
            return {document["name"]: document["pattern_member_frequency"] for document in found}

    def symbol_count(self) -> int:
        """Number of distinct symbols learned (collection metadata, O(1) on MongoDB)."""
        with _storage_errors("count symbols"):
            return self._symbols.estimated_document_count()

    def totals(self) -> Totals:
        """The totals document (zeros when it is missing)."""
        with _storage_errors("read totals"):
            document = self._metadata.find_one(_TOTALS)
        if document is None:
            return Totals()
        return Totals(**{name: document.get(name, 0) for name in _ZERO_TOTALS})

    def store_predictions(self, unique_id: str, predictions: bytes) -> None:
        """Append a record (decoded into documents); the first one per id is found later.

        A replayed observe stores nothing when ``unique_id`` has a record already (the first
        time round stored it).
        """
        with _storage_errors("store predictions"):
            replay = self._ops is not None and self._ops.replay
            if replay and (
                self._request_applied()
                or self._predictions.find_one({"unique_id": unique_id}, {"_id": 1})
            ):
                return
            self._predictions.insert_one(
                {
                    "unique_id": unique_id,
                    "predictions": list(map(_escaped_prediction, _decode(predictions))),
                    "stored_at": datetime.now(UTC),
                }
            )

    def find_predictions(self, unique_id: str) -> list[dict[str, Any]] | None:
        """Predictions of the first record stored under ``unique_id`` (oldest ``_id``)."""
        with _storage_errors("read predictions"):
            document = self._predictions.find_one(
                {"unique_id": unique_id}, {"_id": 0, "predictions": 1}, sort=[("_id", ASCENDING)]
            )
        return (
            None if document is None else list(map(_unescaped_prediction, document["predictions"]))
        )

    def clear(self) -> None:
        """Drop the whole database, then recreate collections, indexes and zero totals.

        The totals document keeps every processor's op mark across the drop, this one's raised
        to the clear's op; a replayed clear that finds its op applied drops nothing.
        """
        with _storage_errors(f"drop database {self.database_name!r}"):
            if self._request_applied():
                return
            kept = (self._metadata.find_one(_TOTALS, {"_id": 0, "ops": 1}) or {}).get("ops", {})
            self._client.drop_database(self.database_name)
        self._prepare()
        if self._ops is None:
            return
        marks = {f"ops.{owner}": mark for owner, mark in kept.items() if isinstance(mark, int)}
        marks[f"ops.{_escape_key(self._ops.owner)}"] = self._ops.next_op()  # above any earlier
        with _storage_errors("keep the op marks over a clear"):
            self._metadata.update_one(_TOTALS, {"$max": marks})

    def dump(self) -> KnowledgeDump:
        """Everything stored; predictions in the order they were stored."""
        with _storage_errors("dump the knowledge base"):
            return KnowledgeDump(
                patterns=list(self.iter_patterns()),
                symbols=[_symbol(doc) for doc in self._symbols.find({}, {"_id": 0})],
                totals=self.totals(),
                predictions=[
                    PredictionRecord(
                        unique_id=doc["unique_id"],
                        predictions=list(map(_unescaped_prediction, doc["predictions"])),
                    )
                    for doc in self._predictions.find(
                        {}, {"_id": 0, "unique_id": 1, "predictions": 1}, sort=[("_id", ASCENDING)]
                    )
                ],
            )

    def load(self, dump: KnowledgeDump) -> None:
        """Replace everything stored with ``dump`` (a replayed load already applied: nothing)."""
        with _storage_errors("load the knowledge base"):
            if self._request_applied():
                return
        self.clear()
        patterns = [
            {
                "name": record.name,
                "pattern_data": record.pattern_data,
                "length": record.length,
                "frequency": record.frequency,
                "emotives": list(map(_escaped, record.emotives)),
            }
            for record in dump.patterns
        ]
        symbols = []
        for stats in dump.symbols:
            document: Document = {
                "name": stats.name,
                "frequency": stats.frequency,
                "pattern_member_frequency": stats.pattern_member_frequency,
            }
            if stats.emotives:
                document["emotives"] = _escaped(stats.emotives)
            symbols.append(document)
        now = datetime.now(UTC)
        predictions = [
            {
                "unique_id": record.unique_id,
                "predictions": list(map(_escaped_prediction, record.predictions)),
                "stored_at": now,
            }
            for record in dump.predictions
        ]
        with _storage_errors("load the knowledge base"):
            for collection, documents in (
                (self._patterns, patterns),
                (self._symbols, symbols),
                (self._predictions, predictions),
            ):
                if documents:
                    collection.insert_many(documents, ordered=True)
            # $set, not a replacement: the op marks ``clear`` kept stay.
            self._metadata.update_one(_TOTALS, {"$set": msgspec.structs.asdict(dump.totals)})

    def close(self) -> None:
        """Close the client when this store created it; the data stays."""
        if self._owns_client:
            self._client.close()
