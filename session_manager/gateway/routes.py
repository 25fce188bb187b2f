"""``/processors/{processor_id}/…``: the older gateway's routes, over static processors.

Two generations of clients are served here. The gateway's own names (``working-memory``,
``genes/change``, ``increment-recall-threshold``, ``POST predictions`` with ``unique_id``) and
the legacy REST routes of spec Appendix B with their envelopes (``message``, ``interval``,
``time_stamp``). Where both use one path, the reply carries the keys of both.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery

from session_manager.errors import InvalidJson, SessionNotFound, ValidationFailed
from session_manager.gateway.client import Gateway, ProcessorReply

__all__ = ("GATEWAY_HANDLERS",)


def _gateway(state: State) -> Gateway:
    gateway: Gateway | None = state.gateway
    if gateway is None:
        raise SessionNotFound("no processors are registered (PROCESSORS_FILE, KATO_PROCESSORS)")
    return gateway


async def _json_body(request: Request[Any, Any, Any]) -> Any:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise InvalidJson(f"request body is not valid JSON: {exc}") from exc


def _object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValidationFailed(f"{what} must be a JSON object")
    return body


def _passthrough(reply: ProcessorReply) -> Response[Any] | None:
    """Processor errors (already in the error JSON shape) go back unchanged."""
    if reply.status >= 400:
        return Response(reply.body, status_code=reply.status)
    return None


class GatewayController(Controller):
    """Routes for one registered processor, by id."""

    path = "/processors/{processor_id:str}"
    tags = ["gateway"]  # noqa: RUF012

    async def _interval(self, gateway: Gateway, processor_id: str) -> int:
        status = await gateway.call(processor_id, "GET", "/status")
        return int(status.body.get("time", 0)) if status.status == 200 else 0

    async def _envelope(
        self, gateway: Gateway, processor_id: str, message: Any, **extra: Any
    ) -> dict[str, Any]:
        interval = await self._interval(gateway, processor_id)
        return {
            "id": processor_id,
            "interval": interval,
            "time_stamp": time.time(),
            "status": "okay",
            "message": message,
            **extra,
        }

    @get(["/ping"])
    async def ping(self, state: State, processor_id: FromPath[str]) -> Response[Any]:
        """Legacy ping: name and observation counter."""
        reply = await _gateway(state).call(processor_id, "GET", "/status")
        if (error := _passthrough(reply)) is not None:
            return error
        name = reply.body.get("processor_name", "")
        return Response(
            {
                "id": processor_id,
                "interval": reply.body.get("time", 0),
                "time_stamp": time.time(),
                "status": "okay",
                "message": name,
                "processor": name,
            }
        )

    @get(["/status"])
    async def status(self, state: State, processor_id: FromPath[str]) -> Response[Any]:
        """Legacy status envelope."""
        reply = await _gateway(state).call(processor_id, "GET", "/status")
        if (error := _passthrough(reply)) is not None:
            return error
        name, interval = reply.body.get("processor_name", ""), reply.body.get("time", 0)
        return Response(
            {
                "status": "okay",
                "processor": name,
                "id": processor_id,
                "time_stamp": time.time(),
                "interval": interval,
                "message": {
                    "status": "okay",
                    "message": name,
                    "id": processor_id,
                    "interval": interval,
                },
            }
        )

    @post(["/observe"], status_code=200)
    async def observe(
        self, state: State, request: Request[Any, Any, Any], processor_id: FromPath[str]
    ) -> Response[Any]:
        """Observe; the body is an observation or ``{"data": observation}``."""
        body = _object(await _json_body(request), "the observation")
        if "data" in body and isinstance(body["data"], dict):
            body = body["data"]
        reply = await _gateway(state).call(processor_id, "POST", "/observe", json=body)
        if (error := _passthrough(reply)) is not None:
            return error
        result = reply.body
        return Response(
            {
                **result,
                "id": processor_id,
                "interval": result.get("time", 0),
                "time_stamp": time.time(),
                "status": "okay",
                "message": {
                    "status": "observed",
                    "auto_learned_pattern": result.get("auto_learned_pattern"),
                },
            }
        )

    @get(["/working-memory", "/short-term-memory", "/stm"])
    async def working_memory(self, state: State, processor_id: FromPath[str]) -> Response[Any]:
        """Short-term memory, as ``stm`` and as the legacy ``message``."""
        reply = await _gateway(state).call(processor_id, "GET", "/stm")
        if (error := _passthrough(reply)) is not None:
            return error
        interval = await self._interval(_gateway(state), processor_id)
        return Response(
            {
                **reply.body,
                "message": reply.body["stm"],
                "time_stamp": time.time(),
                "interval": interval,
            }
        )

    @post(
        [
            "/working-memory/clear",
            "/clear-short-term-memory",
            "/clear-stm",
            "/short-term-memory/clear",
            "/stm/clear",
        ],
        status_code=200,
    )
    async def clear_stm(self, state: State, processor_id: FromPath[str]) -> Response[Any]:
        """Clear short-term memory."""
        gateway = _gateway(state)
        reply = await gateway.call(processor_id, "POST", "/clear-stm")
        if (error := _passthrough(reply)) is not None:
            return error
        return Response(await self._envelope(gateway, processor_id, "stm-cleared"))

    @post(["/clear-all-memory", "/clear-all"], status_code=200)
    async def clear_all(self, state: State, processor_id: FromPath[str]) -> Response[Any]:
        """Clear everything the processor knows."""
        gateway = _gateway(state)
        reply = await gateway.call(processor_id, "POST", "/clear-all")
        if (error := _passthrough(reply)) is not None:
            return error
        return Response(await self._envelope(gateway, processor_id, "all-cleared"))

    @post(["/learn"], status_code=200)
    async def learn(self, state: State, processor_id: FromPath[str]) -> Response[Any]:
        """Learn short-term memory as a pattern."""
        gateway = _gateway(state)
        reply = await gateway.call(processor_id, "POST", "/learn")
        if (error := _passthrough(reply)) is not None:
            return error
        name = reply.body.get("pattern_name", "")
        return Response(await self._envelope(gateway, processor_id, name, pattern_name=name))

    @get(["/predictions"])
    async def predictions_get(
        self, state: State, processor_id: FromPath[str], unique_id: FromQuery[str | None] = None
    ) -> Response[Any]:
        """Predictions (``?unique_id=`` for a stored record)."""
        return await self._predictions(state, processor_id, unique_id)

    @post(["/predictions"], status_code=200)
    async def predictions_post(
        self, state: State, request: Request[Any, Any, Any], processor_id: FromPath[str]
    ) -> Response[Any]:
        """Predictions; the body may carry ``unique_id``."""
        body = _object(await _json_body(request), "the body")
        unique_id = body.get("unique_id")
        if unique_id is not None and not isinstance(unique_id, str):
            raise ValidationFailed("unique_id must be a string")
        return await self._predictions(state, processor_id, unique_id)

    async def _predictions(
        self, state: State, processor_id: str, unique_id: str | None
    ) -> Response[Any]:
        params = {"unique_id": unique_id} if unique_id else None
        reply = await _gateway(state).call(processor_id, "GET", "/predictions", params=params)
        if (error := _passthrough(reply)) is not None:
            return error
        return Response({**reply.body, "message": reply.body["predictions"]})

    @get(["/percept-data"])
    async def percept_data(self, state: State, processor_id: FromPath[str]) -> Response[Any]:
        """The last observation as received."""
        reply = await _gateway(state).call(processor_id, "GET", "/percept-data")
        if (error := _passthrough(reply)) is not None:
            return error
        return Response({**reply.body, "message": reply.body["percept_data"]})

    @get(["/cognition-data"])
    async def cognition_data(self, state: State, processor_id: FromPath[str]) -> Response[Any]:
        """The processor's cognition data."""
        reply = await _gateway(state).call(processor_id, "GET", "/cognition-data")
        if (error := _passthrough(reply)) is not None:
            return error
        return Response({**reply.body, "message": reply.body["cognition_data"]})

    @get(["/gene/{gene_name:str}"])
    async def gene(
        self, state: State, processor_id: FromPath[str], gene_name: FromPath[str]
    ) -> Response[Any]:
        """One gene's value."""
        reply = await _gateway(state).call(processor_id, "GET", f"/gene/{gene_name}")
        if (error := _passthrough(reply)) is not None:
            return error
        return Response({**reply.body, "message": reply.body["gene_value"]})

    @get(["/pattern/{pattern_id:str}"])
    async def pattern(
        self, state: State, processor_id: FromPath[str], pattern_id: FromPath[str]
    ) -> Response[Any]:
        """One learned pattern."""
        reply = await _gateway(state).call(processor_id, "GET", f"/pattern/{pattern_id}")
        if (error := _passthrough(reply)) is not None:
            return error
        return Response({**reply.body, "message": reply.body["pattern"]})

    @post(["/genes/change", "/genes/update"], status_code=200)
    async def genes_change(
        self, state: State, request: Request[Any, Any, Any], processor_id: FromPath[str]
    ) -> Response[Any]:
        """Change genes: ``{"data": {…}}``, ``{"genes": {…}}`` or ``{gene_name, gene_value}``."""
        body = _object(await _json_body(request), "the body")
        if "gene_name" in body:
            if not isinstance(body["gene_name"], str) or "gene_value" not in body:
                raise ValidationFailed("gene_name must be a string and gene_value present")
            genes = {body["gene_name"]: body["gene_value"]}
        else:
            genes = _object(body.get("data", body.get("genes")), "data (the genes to change)")
        reply = await _gateway(state).call(
            processor_id, "POST", "/genes/update", json={"genes": genes}
        )
        if (error := _passthrough(reply)) is not None:
            return error
        return Response({"id": processor_id, "status": "okay", "message": "updated-genes"})

    @post(["/increment-recall-threshold"], status_code=200)
    async def increment_recall_threshold(
        self, state: State, request: Request[Any, Any, Any], processor_id: FromPath[str]
    ) -> Response[Any]:
        """Add ``increment`` to ``recall_threshold`` (kept within 0..1); answers the new value."""
        body = _object(await _json_body(request), "the body")
        increment = body.get("increment")
        if isinstance(increment, bool) or not isinstance(increment, int | float):
            raise ValidationFailed("increment must be a number")
        gateway = _gateway(state)
        async with gateway.lock(processor_id):
            current = await gateway.call(processor_id, "GET", "/gene/recall_threshold")
            if (error := _passthrough(current)) is not None:
                return error
            value = min(1.0, max(0.0, float(current.body["gene_value"]) + increment))
            reply = await gateway.call(
                processor_id, "POST", "/genes/update", json={"genes": {"recall_threshold": value}}
            )
            if (error := _passthrough(reply)) is not None:
                return error
        return Response(
            {"id": processor_id, "status": "okay", "recall_threshold": value, "message": value}
        )


# The legacy gateway served these at its root; clients that only change their base URL to
# ``…/processors`` find them there too; the registry refuses the ids ``kato-api`` and ``connect``.
_LEGACY_ROOT = ("", "/processors")


@get([f"{prefix}/kato-api/ping" for prefix in _LEGACY_ROOT], tags=["gateway"])
async def legacy_ping() -> dict[str, str]:
    """The legacy gateway's liveness route: okay while the manager runs."""
    return {"status": "okay"}


@get([f"{prefix}/connect" for prefix in _LEGACY_ROOT], tags=["gateway"])
async def legacy_connect(state: State) -> dict[str, Any]:
    """The legacy ``connect``: the registered processors as the genome's nodes."""
    gateway: Gateway | None = state.gateway
    processors = gateway.processors.values() if gateway is not None else ()
    return {
        "status": "okay",
        "message": "connected",
        "genome": {
            "name": "kato-sessions",
            "elements": {
                "nodes": [
                    {"data": {"id": p.id, "name": p.name, "classifier": p.classifier}}
                    for p in processors
                ]
            },
        },
    }


GATEWAY_HANDLERS = (GatewayController, legacy_ping, legacy_connect)
