"""The KATO processor: observe, short-term memory, learn, predict (spec §1-§6).

Pure Python: no web framework, no database driver. Every call is synchronous; callers
serialise them (the service holds one lock), as the reference does.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from processor_image.engine.compiled import EMPTY
from processor_image.engine.core import CoreName, hasher, make_index, resolve
from processor_image.engine.emotives import average
from processor_image.engine.errors import GeneNotFound, ObservationError
from processor_image.engine.genes import GENE_ALIASES, GENE_RULES, Genes, validate_genes
from processor_image.engine.knowledge import KnowledgeBase
from processor_image.engine.naming import PATTERN_PREFIX, bare_name, vector_symbol
from processor_image.engine.predictions import Prediction, predict_json
from processor_image.engine.sharing import KnowledgeOp, KnowledgeShare
from processor_image.engine.state import ProcessorState
from processor_image.engine.stm import ShortTermMemory

__all__ = ("ObserveResult", "Processor")

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(list[dict[str, Any]]).decode
_START = b'{"type":"prototypical","name":"'
"""How every prediction the engine writes starts: its name is prefixed by inserting after it."""
_START_PREFIXED = _START + PATTERN_PREFIX.encode()


class ObserveResult(msgspec.Struct, kw_only=True):
    """What one observation returns (spec §2.5)."""

    unique_id: str
    auto_learned_pattern: str | None
    time: int


class Processor:
    """One KATO processor bound to one knowledge base."""

    def __init__(
        self,
        *,
        processor_id: str,
        kb: KnowledgeBase,
        genes: Genes | None = None,
        name: str = "KatoProcessor",
        kb_id: str | None = None,
        core: str | None = None,
        share: bool = False,
    ) -> None:
        """``core``: ``auto``, ``python`` or ``compiled``; None reads ``KATO_ENGINE_CORE``.

        ``share``: record knowledge changes in an outbox (``engine.sharing``).
        """
        self.processor_id = processor_id
        self.name = name
        self.kb_id = kb_id if kb_id is not None else processor_id
        self.kb = kb
        self.genes = genes if genes is not None else Genes()
        self._manifest: dict[str, Any] = {
            **self.genes.manifest(),
            "id": processor_id,
            "name": name,
            "kb_id": self.kb_id,
        }
        # The emotive window is fixed when the knowledge base is opened (reference quirk Q5).
        self._window = self.genes.persistence
        self.core: CoreName = resolve(core)
        """The matching core predictions are computed on."""
        self._index = make_index(self.core)
        self._hash = hasher(self.core)
        self._index_knowledge()
        self.share = KnowledgeShare() if share else None
        """Outbox and log position when this processor's knowledge is shared, else None."""
        self.share_paused = False
        """Set while a replayed request runs: its changes were drained the first time."""
        self.time = 0
        self._reset_short_term()

    def _index_knowledge(self) -> None:
        """The search index holds exactly the knowledge base's patterns (start-up, restore)."""
        self._index.clear()
        for record in self.kb.iter_patterns():
            self._index.add(record.name, record.pattern_data)

    def _reset_short_term(self) -> None:
        self._stm = ShortTermMemory()
        self._accumulator: list[dict[str, float]] = []
        self._current_emotives: dict[str, float] = {}
        self._symbols: list[str] = []
        self._percept: dict[str, Any] = {}
        # The latest predictions as the knowledge base stores them (JSON, bare names): most
        # are never read, so they are decoded only when asked for. ``_written`` says they are
        # laid out as the engine writes them (restored ones may not be): see predictions_json.
        self._predictions = EMPTY
        self._written = True

    # -- observing and learning -------------------------------------------------------------

    def observe(
        self,
        strings: Sequence[str] = (),
        vectors: Sequence[Sequence[float]] = (),
        emotives: Mapping[str, float] | None = None,
        unique_id: str = "",
        path: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ObserveResult:
        """Take one observation (spec §2.2); the caller generates ``unique_id`` when absent."""
        self.time += 1
        if unique_id == "":
            raise ObservationError("Error: no unique_id in observe call from websocket")
        emotives = dict(emotives or {})
        self._percept = {
            "strings": list(strings),
            "vectors": [list(vector) for vector in vectors],
            "emotives": dict(emotives),
            "path": [*(path or ()), f"{self.name}-{self.processor_id}-process"],
            "metadata": dict(metadata or {}),
        }
        vector_part = [vector_symbol(vectors)] if vectors else []
        string_part = sorted(strings) if self.genes.sort else list(strings)
        if emotives:
            self._accumulator.append(emotives)
            self._current_emotives = average(self._accumulator)
        self._symbols = vector_part + string_part
        if self._symbols:
            self._stm.append(self._symbols)
        if strings or vectors:
            self._predictions = self._compute_predictions(unique_id)
            self._written = True
        return ObserveResult(
            unique_id=unique_id, auto_learned_pattern=self._auto_learn(), time=self.time
        )

    def _compute_predictions(self, unique_id: str) -> bytes:
        if len(self._stm.state) < 2:
            return EMPTY
        result = predict_json(
            self._stm.state,
            self._index,
            self.kb,
            recall_threshold=self.genes.recall_threshold,
            max_predictions=self.genes.max_predictions,
            counts=self._stm.counts,
        )
        if result != EMPTY:
            self.kb.store_predictions(unique_id, result)
        return result

    def _auto_learn(self) -> str | None:
        limit = self.genes.max_pattern_length
        events = len(self._stm)
        if limit <= 0 or events < limit:
            return None
        if events > 1:
            tail = self._stm.last
            name = self.learn()
            self._stm.append(tail)
            return name
        return self.learn()

    def learn(self) -> str:
        """Learn STM as a pattern (spec §3); returns ``PTRN|<hash>`` or ``""``."""
        pattern_data = self._stm.take()
        accumulator, self._accumulator = self._accumulator, []
        if sum(map(len, pattern_data)) < 2:
            return ""
        name = self._hash(pattern_data)
        pushed = None
        averaged = average(accumulator) if accumulator else None
        if averaged:
            pushed = {key: value for key, value in averaged.items() if value != 0}
        if self.kb.learn(name, pattern_data, pushed, self._window):
            self._index.add(name, pattern_data)
        if self.share is not None:
            self._shared(KnowledgeOp(op="learn", name=name, pattern=pattern_data, emotives=pushed))
        return PATTERN_PREFIX + name

    def _shared(self, op: KnowledgeOp) -> None:
        if self.share is not None and not self.share_paused:
            self.share.outbox.append(op)

    def drain_knowledge(self) -> list[KnowledgeOp]:
        """The changes made since the last drain (empty when knowledge is not shared)."""
        if self.share is None:
            return []
        drained, self.share.outbox = self.share.outbox, []
        return drained

    def apply_knowledge(self, since: int, ops: Sequence[KnowledgeOp]) -> int:
        """Apply log entries ``since`` onwards (skipping this processor's own); the new offset.

        Entries for another position change nothing: the caller reads the offset and resends.
        """
        if self.share is None or since != self.share.offset:
            return self.share.offset if self.share is not None else 0
        rebuild = False
        for op in ops:
            if op.origin == self.processor_id:
                continue
            if op.op == "clear":
                self.kb.clear()
                rebuild = True
            elif self.kb.learn(op.name, op.pattern, op.emotives, self._window) and not rebuild:
                self._index.add(op.name, op.pattern)
        if rebuild:
            self._index_knowledge()
        self.share.offset += len(ops)
        return self.share.offset

    def drop_events(self) -> None:
        """Empty STM only; accumulators, percept and predictions stay (v3's sequence option)."""
        self._stm = ShortTermMemory()

    def reload_knowledge(self) -> int:
        """Rebuild the search index from the store: a shared store gained others' patterns."""
        self._index_knowledge()
        return len(self._index)

    def clear_stm(self) -> None:
        """Empty STM and everything derived from the current observations (spec §6)."""
        self._reset_short_term()

    def clear_all(self) -> None:
        """``clear-stm`` plus time and the whole knowledge base; genes stay (spec §6)."""
        self._reset_short_term()
        self.time = 0
        self.kb.clear()
        self._shared(KnowledgeOp(op="clear"))
        # Re-read rather than emptied: a shared store skips a replayed clear it already
        # applied, and then still holds what was learned after it (normally it is empty).
        self._index_knowledge()

    # -- reading ----------------------------------------------------------------------------

    @property
    def stm(self) -> list[list[str]]:
        """A copy of short-term memory."""
        return self._stm.events

    @property
    def stm_length(self) -> int:
        """Number of events in STM."""
        return len(self._stm)

    def predictions(self, unique_id: str | None = None) -> list[Prediction]:
        """The cached predictions, or the first stored record for ``unique_id``; names prefixed."""
        if unique_id is None:
            found: list[Prediction] | None = _decode(self._predictions)
        else:
            found = self.kb.find_predictions(unique_id)
        return [_prefixed(prediction) for prediction in found or ()]

    def predictions_json(self, unique_id: str | None = None) -> bytes:
        """``predictions(unique_id)`` as JSON; the latest ones without decoding them.

        Decoding a dense record (~100 KB) costs several times encoding it. Every prediction the
        engine writes starts with ``_START`` (its keys in spec order, ``name`` second and bare),
        which cannot occur inside a JSON string, where quotes are escaped: inserting the prefix
        there prefixes exactly the names.
        """
        if unique_id is None and self._written:
            return self._predictions.replace(_START, _START_PREFIXED)
        return _encode(self.predictions(unique_id))

    def get_pattern(self, pattern_id: str) -> dict[str, Any] | None:
        """The stored pattern document with a prefixed name, or None (spec §6)."""
        record = self.kb.get_pattern(bare_name(pattern_id))
        if record is None:
            return None
        document = msgspec.structs.asdict(record)
        document["name"] = PATTERN_PREFIX + record.name
        return document

    def pattern_count(self) -> int:
        """Number of stored patterns."""
        return self.kb.pattern_count()

    def percept_data(self) -> dict[str, Any]:
        """The last observation as received (spec §6)."""
        return copy.deepcopy(self._percept)

    def cognition_data(self) -> dict[str, Any]:
        """The processor's current picture of the world (spec §6; names prefixed, Q10)."""
        return {
            "predictions": self.predictions(),
            "emotives": dict(self._current_emotives),
            "symbols": list(self._symbols),
            "command": "",
            "metadata": {},
            "path": [],
            "strings": [],
            "vectors": [],
            "short_term_memory": self.stm,
        }

    # -- genes ------------------------------------------------------------------------------

    def update_genes(self, updates: Mapping[str, Any]) -> None:
        """Apply every update or none: one bad or unknown name changes nothing (§5.2)."""
        for field, value in validate_genes(updates, updating=True).items():
            setattr(self.genes, field, value)
            self._manifest[field] = value

    def get_gene(self, name: str) -> Any:
        """Live state, then live genes (``SORT`` too), then the start-up manifest (spec §5.3)."""
        live = {"time": self.time, "id": self.processor_id, "name": self.name}
        if name in live:
            return live[name]
        field = GENE_ALIASES.get(name, name)
        if field in GENE_RULES:
            return getattr(self.genes, field)
        if name in self._manifest:
            return self._manifest[name]
        raise GeneNotFound(name)

    # -- hibernation ------------------------------------------------------------------------

    def snapshot(self) -> ProcessorState:
        """The whole in-memory state; the knowledge base too when it is not persistent."""
        return ProcessorState(
            genes=msgspec.structs.replace(self.genes),
            manifest=dict(self._manifest),
            window=self._window,
            time=self.time,
            stm=self.stm,
            emotive_accumulator=[dict(e) for e in self._accumulator],
            current_emotives=dict(self._current_emotives),
            symbols=list(self._symbols),
            percept_data=copy.deepcopy(self._percept),
            predictions=_decode(self._predictions),
            knowledge=None if self.kb.persistent else self.kb.dump(),
            share=msgspec.structs.replace(self.share) if self.share is not None else None,
        )

    def restore(self, state: ProcessorState) -> None:
        """Become indistinguishable from the processor that took ``state``.

        Its genes pass the same validator as an update, before anything changes.
        """
        validate_genes(msgspec.structs.asdict(state.genes))
        if state.knowledge is not None:
            self.kb.load(state.knowledge)
        self._index_knowledge()
        self.genes = msgspec.structs.replace(state.genes)
        self._manifest = {
            **state.manifest,
            "id": self.processor_id,
            "name": self.name,
            "kb_id": self.kb_id,
        }
        self._window = state.window
        self.time = state.time
        self._stm = ShortTermMemory(state.stm)
        self._accumulator = [dict(e) for e in state.emotive_accumulator]
        self._current_emotives = dict(state.current_emotives)
        self._symbols = list(state.symbols)
        self._percept = copy.deepcopy(state.percept_data)
        self._predictions = _encode(state.predictions) if state.predictions else EMPTY
        self._written = _as_written(state.predictions, self._predictions)
        if self.share is not None and state.share is not None:
            self.share = KnowledgeShare(offset=state.share.offset, outbox=list(state.share.outbox))


def _as_written(predictions: list[Prediction], encoded: bytes) -> bool:
    """Whether ``encoded`` (of ``predictions``) is laid out as the engine writes predictions.

    A snapshot's may be hand-made: other key order, prefixed names, an emotives dict that
    looks like a prediction; then ``_START`` is not found once per prediction.
    """
    for prediction in predictions:
        name = prediction.get("name")
        if list(prediction)[:2] != ["type", "name"] or prediction["type"] != "prototypical":
            return False
        if not isinstance(name, str) or name.startswith(PATTERN_PREFIX):
            return False
    return encoded.count(_START) == len(predictions)


def _prefixed(prediction: Prediction) -> Prediction:
    name: str = prediction["name"]
    if name.startswith(PATTERN_PREFIX):
        return dict(prediction)
    return {**prediction, "name": PATTERN_PREFIX + name}
