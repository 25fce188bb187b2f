"""The HTTP endpoints of spec §7.2, plus ``/observe-sequence`` and ``/state`` for hibernation."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import msgspec
from litestar import MediaType, Request, Response, get, post, put
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody

from processor_image.engine import EngineError, ObservationError, ProcessorState
from processor_image.engine.naming import check_observation
from processor_image.service.errors import (
    BODY,
    ErrorShapedOperation,
    FailedButApplied,
    PatternNotFound,
    SequenceFailed,
    documented,
)
from processor_image.service.runtime import (
    REPLAY_SEQ_HEADER,
    SEQ_HEADER,
    STATE_SEQ_HEADER,
    UNIQUE_ID_HEADER,
    Runtime,
)
from processor_image.service.schemas import (
    CognitionDataResponse,
    GeneResponse,
    GenesUpdateRequest,
    HealthResponse,
    KnowledgeReloadResponse,
    KnowledgeSyncRequest,
    KnowledgeSyncResponse,
    LearnResponse,
    MessageResponse,
    MetricsResponse,
    ObserveRequest,
    ObserveResponse,
    ObserveSequenceDetailed,
    ObserveSequenceRequest,
    ObserveSequenceResponse,
    PatternResponse,
    PerceptDataResponse,
    PredictionsResponse,
    SequenceDetails,
    StatusResponse,
    StmResponse,
)
from processor_image.service.state_transfer import (
    ZSTD,
    decode_state,
    encode_state,
    read_limited,
    wants_zstd,
    without_gc,
)

__all__ = ("ROUTES",)

_YIELD_EVERY = 200
"""Observations between yields to the event loop inside ``/observe-sequence`` (lock held)."""

_STATE_REPLY = ResponseSpec(
    data_container=ProcessorState,
    description="The snapshot; zstd-compressed (Content-Encoding: zstd) if Accept-Encoding asks",
    generate_examples=False,
)


_Body = TypeVar("_Body")

AnyRequest = Request[Any, Any, Any]


def _status_of(runtime: Runtime) -> StatusResponse:
    """The ``/status`` reply (also what a restore answers); the caller holds the lock."""
    p = runtime.processor
    return StatusResponse(
        status="okay",
        processor_id=runtime.processor_id,
        processor_name=p.name,
        uptime=runtime.uptime(),
        stm_length=p.stm_length,
        time=p.time,
        engine_core=p.core,
    )


def _runtime(request: AnyRequest) -> Runtime:
    """The app's runtime, read from the request (an injected ``State`` is built per request)."""
    runtime: Runtime = request.app.state.runtime
    return runtime


_REPLAY_SEQ = REPLAY_SEQ_HEADER.lower().encode()
_UNIQUE_ID = UNIQUE_ID_HEADER.lower().encode()


def _header(request: AnyRequest, name: bytes) -> str | None:
    """One request header, read straight from the ASGI scope (no ``Headers`` object built)."""
    for key, value in request.scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _replay_seq(request: AnyRequest) -> str | None:
    """``X-Kato-Replay-Seq``: the sequence number a replayed request had the first time."""
    return _header(request, _REPLAY_SEQ)


def _applied(runtime: Runtime, request: AnyRequest) -> int:
    """Count a mutating request that changed state (lock held); see ``Runtime.applied``."""
    return runtime.applied(_replay_seq(request))


def _begin(runtime: Runtime, request: AnyRequest) -> None:
    """Announce a request that may write knowledge (lock held); see ``Runtime.begin``."""
    runtime.begin(_replay_seq(request))


def _sequenced(body: _Body, seq: int) -> Response[_Body]:
    """A mutating request's reply, with the sequence number it got in ``X-Kato-Seq``."""
    return Response(body, headers={SEQ_HEADER: str(seq)})


@get("/health", sync_to_thread=False)
def health(request: AnyRequest) -> HealthResponse:
    """Liveness without the lock: answers even while a long call runs."""
    runtime = _runtime(request)
    return HealthResponse(
        status="healthy", processor_id=runtime.processor_id, uptime=runtime.uptime()
    )


@get("/status")
async def status(request: AnyRequest) -> StatusResponse:
    """Identity, uptime, STM length and the observation counter."""
    runtime = _runtime(request)
    async with runtime.lock:
        return _status_of(runtime)


@post("/observe", status_code=200, responses=documented(*BODY, 503))
async def observe(request: AnyRequest, data: JSONBody[ObserveRequest]) -> Response[ObserveResponse]:
    """One observation (spec §2)."""
    runtime = _runtime(request)
    offered = _header(request, _UNIQUE_ID)
    async with runtime.lock:
        _begin(runtime, request)
        try:
            reply = await runtime.run(runtime.observe, data, offered)
        except ObservationError as exc:  # time counted all the same (spec §2.2): numbered
            headers = {SEQ_HEADER: str(_applied(runtime, request))}
            if offered is not None:
                headers[UNIQUE_ID_HEADER] = data.unique_id or offered
            raise FailedButApplied(exc, headers) from exc
        seq = _applied(runtime, request)
        if offered is None:
            return _sequenced(reply, seq)
        # Honoured: the manager, which journaled the request with that id, is told so.
        return Response(reply, headers={SEQ_HEADER: str(seq), UNIQUE_ID_HEADER: reply.unique_id})


@post("/observe-sequence", status_code=200, responses=documented(*BODY, 503))
async def observe_sequence(
    request: AnyRequest, data: JSONBody[ObserveSequenceRequest]
) -> Response[ObserveSequenceResponse]:
    """Many observations in order under one lock hold (one round trip instead of many).

    All or nothing: every observation is checked first, and one the engine would refuse
    refuses the sequence (``details.index``) before anything is applied. Nothing partial is
    left for the manager's journal to miss.
    """
    runtime = _runtime(request)
    for index, observation in enumerate(data.observations):
        try:
            check_observation(observation.vectors)
        except EngineError as exc:
            raise SequenceFailed(exc, index) from exc
    async with runtime.lock:
        _begin(runtime, request)
        results, details = await _observe_all(runtime, data)
        seq = _applied(runtime, request)
    reply: ObserveSequenceResponse
    if data.details:
        reply = ObserveSequenceDetailed(
            results=results, processor_id=runtime.processor_id, details=details
        )
    else:
        reply = ObserveSequenceResponse(results=results, processor_id=runtime.processor_id)
    return _sequenced(reply, seq)


async def _observe_all(
    runtime: Runtime, data: ObserveSequenceRequest
) -> tuple[list[ObserveResponse], SequenceDetails]:
    """The sequence's observations and learns in order (lock held), as v3 orders them."""
    p = runtime.processor
    results: list[ObserveResponse] = []
    details = SequenceDetails(
        initial_stm_length=p.stm_length,
        stm_lengths=[],
        learned_patterns=[],
        final_learned_pattern=None,
        final_stm_length=0,
    )
    for index, observation in enumerate(data.observations):
        if data.clear_stm_between and index > 0:
            p.drop_events()
        result = await runtime.run(runtime.observe, observation)
        if data.learn_after_each and p.stm_length > 0:
            details.learned_patterns.append(await runtime.run(p.learn))
        if result.auto_learned_pattern:
            details.learned_patterns.append(result.auto_learned_pattern)
        details.stm_lengths.append(p.stm_length)
        results.append(result)
        if index % _YIELD_EVERY == _YIELD_EVERY - 1:
            await asyncio.sleep(0)  # /health keeps answering during a long sequence
    if data.learn_at_end and p.stm_length > 0:
        details.final_learned_pattern = await runtime.run(p.learn)
        details.learned_patterns.append(details.final_learned_pattern)
    details.final_stm_length = p.stm_length
    return results, details


@post("/knowledge/reload", status_code=200, responses=documented(503))
async def knowledge_reload(request: AnyRequest) -> KnowledgeReloadResponse:
    """Re-read the knowledge base's patterns into the search index.

    A processor indexes its store's patterns when it starts; on a store shared with other
    processors (MongoDB) their later learns are readable but not matched until it re-reads.
    The manager's v3 API calls this before a session's next observe or prediction once another
    session of the same node learned. Changes no state a snapshot holds, so it is not numbered.
    """
    runtime = _runtime(request)
    async with runtime.lock:
        count = await runtime.run(runtime.processor.reload_knowledge)
    return KnowledgeReloadResponse(patterns=count, processor_id=runtime.processor_id)


@get(["/stm", "/short-term-memory"])
async def stm(request: AnyRequest) -> StmResponse:
    """Short-term memory."""
    runtime = _runtime(request)
    async with runtime.lock:
        return StmResponse(stm=runtime.processor.stm, processor_id=runtime.processor_id)


@post("/learn", status_code=200, responses=documented(503))
async def learn(request: AnyRequest) -> Response[LearnResponse]:
    """Learn STM as a pattern; the body is ignored."""
    runtime = _runtime(request)
    async with runtime.lock:
        _begin(runtime, request)
        name = await runtime.run(runtime.processor.learn)
        seq = _applied(runtime, request)
    message = f"Learned pattern: {name}" if name else "Insufficient data for learning"
    return _sequenced(
        LearnResponse(pattern_name=name, processor_id=runtime.processor_id, message=message), seq
    )


@post(["/clear-stm", "/clear-short-term-memory"], status_code=200)
async def clear_stm(request: AnyRequest) -> Response[MessageResponse]:
    """Clear STM and what derives from it."""
    runtime = _runtime(request)
    async with runtime.lock:
        runtime.processor.clear_stm()
        seq = _applied(runtime, request)
    return _sequenced(
        MessageResponse(status="okay", message="stm-cleared", processor_id=runtime.processor_id),
        seq,
    )


@post(["/clear-all", "/clear-all-memory"], status_code=200, responses=documented(503))
async def clear_all(request: AnyRequest) -> Response[MessageResponse]:
    """Clear STM, time and the whole knowledge base; genes stay."""
    runtime = _runtime(request)
    async with runtime.lock:
        _begin(runtime, request)
        await runtime.run(runtime.processor.clear_all)
        seq = _applied(runtime, request)
    return _sequenced(
        MessageResponse(status="okay", message="all-cleared", processor_id=runtime.processor_id),
        seq,
    )


@get("/predictions")
async def predictions(
    request: AnyRequest, unique_id: FromQuery[str | None] = None
) -> PredictionsResponse:
    """The latest predictions, or those stored for ``?unique_id=``."""
    runtime = _runtime(request)
    async with runtime.lock:
        found = await runtime.run(runtime.processor.predictions_json, unique_id or None)
    return PredictionsResponse(predictions=msgspec.Raw(found), processor_id=runtime.processor_id)


@post("/predictions", status_code=200)
async def predictions_post(
    request: AnyRequest, unique_id: FromQuery[str | None] = None
) -> PredictionsResponse:
    """Same as GET; a body is ignored (spec §7.2)."""
    return await predictions.fn(request=request, unique_id=unique_id)  # type: ignore[no-any-return]


@get("/pattern/{pattern_id:str}", responses=documented(404, 503))
async def pattern(request: AnyRequest, pattern_id: FromPath[str]) -> PatternResponse:
    """A stored pattern, by ``PTRN|<hash>`` or bare hash."""
    runtime = _runtime(request)
    async with runtime.lock:
        found = await runtime.run(runtime.processor.get_pattern, pattern_id)
    if found is None:
        raise PatternNotFound(pattern_id)
    return PatternResponse(pattern=found, processor_id=runtime.processor_id)


@post("/genes/update", status_code=200, responses=documented(400, *BODY))
async def genes_update(
    request: AnyRequest, data: JSONBody[GenesUpdateRequest]
) -> Response[MessageResponse]:
    """Apply every gene update or, when one name or value is refused, none (spec §5.2)."""
    runtime = _runtime(request)
    async with runtime.lock:
        runtime.processor.update_genes(data.genes)
        seq = _applied(runtime, request)
    return _sequenced(
        MessageResponse(status="okay", message="genes-updated", processor_id=runtime.processor_id),
        seq,
    )


@get("/gene/{gene_name:str}", responses=documented(404))
async def gene(request: AnyRequest, gene_name: FromPath[str]) -> GeneResponse:
    """One gene's live value (spec §5.3)."""
    runtime = _runtime(request)
    async with runtime.lock:
        value = runtime.processor.get_gene(gene_name)
    return GeneResponse(gene_name=gene_name, gene_value=value, processor_id=runtime.processor_id)


@get("/percept-data")
async def percept_data(request: AnyRequest) -> PerceptDataResponse:
    """The last observation as received."""
    runtime = _runtime(request)
    async with runtime.lock:
        return PerceptDataResponse(
            percept_data=runtime.processor.percept_data(), processor_id=runtime.processor_id
        )


@get("/cognition-data")
async def cognition_data(request: AnyRequest) -> CognitionDataResponse:
    """Predictions, emotives, last event and STM."""
    runtime = _runtime(request)
    async with runtime.lock:
        return CognitionDataResponse(
            cognition_data=runtime.processor.cognition_data(), processor_id=runtime.processor_id
        )


@get("/metrics")
async def metrics(request: AnyRequest) -> MetricsResponse:
    """Counters (spec §6); ``patterns_learned`` is 0 when the store cannot count."""
    runtime = _runtime(request)
    async with runtime.lock:
        p = runtime.processor
        try:
            patterns = await runtime.run(p.pattern_count)
        except Exception:  # the reference reports 0 when counting fails
            patterns = 0
        return MetricsResponse(
            processor_id=runtime.processor_id,
            observations_processed=p.time,
            patterns_learned=patterns,
            stm_size=p.stm_length,
            uptime_seconds=runtime.uptime(),
        )


@get("/state", responses={200: _STATE_REPLY})
async def get_state(request: AnyRequest) -> Response[bytes]:
    """Snapshot of STM, genes, time, emotives, caches (and a memory store's knowledge).

    ``seq`` is the number of mutating requests the snapshot holds (a checkpoint's position),
    also sent as ``X-Kato-State-Seq``.
    zstd-compressed when ``Accept-Encoding`` names ``zstd`` (what the manager asks for).
    Answers while fenced too: that is how the manager reads the final state to hibernate.
    """
    runtime = _runtime(request)
    async with runtime.lock.past_fence():
        # The snapshot is a deep copy: taken off the loop, encoded once the lock is released.
        snapshot = await asyncio.to_thread(without_gc, runtime.processor.snapshot)
        snapshot = msgspec.structs.replace(snapshot, seq=runtime.seq)
    compress = wants_zstd(request.headers.get("accept-encoding"))
    body = await asyncio.to_thread(encode_state, snapshot, compress=compress)
    headers = {"vary": "accept-encoding", STATE_SEQ_HEADER: str(snapshot.seq)}
    if compress:
        headers["content-encoding"] = ZSTD
    return Response(body, media_type=MediaType.JSON, headers=headers)


@put(
    "/state",
    status_code=200,
    request_max_body_size=None,  # MAX_STATE_BYTES instead, applied by read_limited
    responses=documented(400, 413, 415, 422, 503),
)
async def put_state(request: AnyRequest) -> Response[StatusResponse]:
    """Restore a snapshot; the processor becomes indistinguishable from the one that took it.

    The body is a ``GET /state`` reply: JSON, or zstd with ``Content-Encoding: zstd``; up to
    ``MAX_STATE_BYTES`` (not ``MAX_BODY_BYTES``), as sent and once decompressed. The counter
    goes on from the larger of its own next number and the snapshot's ``seq`` (a checkpoint
    loaded into a fresh processor resumes its numbering), or takes ``X-Kato-Replay-Seq`` when
    the manager sends it.
    """
    runtime = _runtime(request)
    limit = runtime.config.max_state_bytes
    body = await read_limited(request.stream(), limit, request.content_length)
    coding = request.headers.get("content-encoding")
    snapshot = await asyncio.to_thread(without_gc, decode_state, body, coding, limit)
    del body
    async with runtime.lock:
        replay = _replay_seq(request)
        runtime.begin(replay)  # a snapshot with knowledge replaces a shared store's: an op
        await asyncio.to_thread(without_gc, runtime.processor.restore, snapshot)
        seq = runtime.applied(replay)
        if replay is None and snapshot.seq > seq:
            seq = runtime.seq = snapshot.seq
        return _sequenced(_status_of(runtime), seq)


@post("/knowledge/sync", status_code=200, responses=documented(*BODY))
async def knowledge_sync(
    request: AnyRequest, data: JSONBody[KnowledgeSyncRequest]
) -> KnowledgeSyncResponse:
    """Apply the node log's entries from ``since`` and/or drain this processor's outbox.

    Only for a processor started with ``KNOWLEDGE_OUTBOX=1`` (``engine.sharing``); others
    answer offset 0 and drain nothing. Entries for another position than the processor's are
    not applied: the reply's ``offset`` tells the caller where to resend from. Not numbered:
    the log position travels in snapshots, so a recovered processor catches up from its own.
    """
    runtime = _runtime(request)
    p = runtime.processor
    async with runtime.lock:
        offset = await runtime.run(p.apply_knowledge, data.since, data.ops) if data.ops else None
        if offset is None:
            offset = p.share.offset if p.share is not None else 0
        drained = p.drain_knowledge() if data.drain else []
    return KnowledgeSyncResponse(offset=offset, drained=drained, processor_id=runtime.processor_id)


ROUTES = (
    health,
    status,
    observe,
    observe_sequence,
    stm,
    learn,
    clear_stm,
    clear_all,
    predictions,
    predictions_post,
    pattern,
    genes_update,
    gene,
    percept_data,
    cognition_data,
    metrics,
    knowledge_reload,
    knowledge_sync,
    get_state,
    put_state,
)
for _handler in ROUTES:
    _handler.operation_class = ErrorShapedOperation
