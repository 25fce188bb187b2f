"""Late binding: a warm-pool processor gets its session in one authenticated call (issue 15).

Started with ``AWAIT_CLAIM=1`` (by the manager's warm pool) the processor has imported its web
stack and listens, but hosts no processor yet: no session id, knowledge base or genes. Its
``PROCESSOR_ID`` is a pool id and its ``PROCESSOR_SECRET`` is derived from that id. Until it is
claimed it answers only

* ``GET /health`` (naming the pool id: the manager's readiness probe), and
* ``POST /claim`` carrying the pool secret, body ``{"env": {...}}``: the environment a cold
  start of the session's processor would have had (``PROCESSOR_ID``, ``KB_ID``, ``STORAGE``,
  genes, its own ``PROCESSOR_SECRET``). The processor opens its knowledge base with it (a
  MongoDB one loads its patterns now) and from then on *is* that processor: every route
  answers, and only with the new secret, exactly as if it had been started with that
  environment. Where it listens (``HOST``, ``PORT``, ``ALLOWED_HOSTS``) and its body limits
  stay the pool's.

Before the claim anything else is ``409 NOT_CLAIMED`` (a WebSocket is closed, 1013). Claiming
is once only: a second claim is ``409 ALREADY_CLAIMED`` (and ``401`` with the pool secret, which
opens nothing any more). A claim that cannot be applied (``422 CLAIM_INVALID``: the
environment describes no processor; ``503 CLAIM_FAILED``: the knowledge base did not open)
leaves the processor unclaimed; the manager discards it.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from collections.abc import Mapping
from typing import Any, Literal

import msgspec
from litestar import Litestar

from processor_image.service.config import ConfigError, ServiceConfig
from processor_image.service.errors import error_body
from processor_image.service.guard import ASGIApp, ManagerOnly, Receive, Scope, Send
from processor_image.service.runtime import Runtime
from processor_image.service.schemas import HealthResponse

__all__ = ("CLAIM_PATH", "ClaimGate", "ClaimRequest", "ClaimResponse")

log = logging.getLogger(__name__)

CLAIM_PATH = "/claim"
MAX_CLAIM_BYTES = 64 * 1024
"""A claim is an environment: a few hundred bytes. Anything much larger is not one."""
_KEPT = ("HOST", "PORT", "ALLOWED_HOSTS")
"""Where the processor listens and by which names: the pool's, whatever the claim says."""


class ClaimRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /claim``: the session processor's environment."""

    env: dict[str, str]


class ClaimResponse(msgspec.Struct, kw_only=True):
    """What the processor became."""

    status: Literal["claimed"]
    processor_id: str
    kb_id: str


class ClaimGate:
    """ASGI front of a pooled processor: ``/health`` and ``/claim`` only, then the whole app."""

    def __init__(self, app: Litestar, config: ServiceConfig, environ: Mapping[str, str]) -> None:
        self._litestar = app
        self._app: ASGIApp = app  # plain ASGI (Litestar's own types are narrower)
        self._config = config
        self._environ = {k: v for k, v in environ.items() if k != "AWAIT_CLAIM"}
        self._started = time.monotonic()
        self._claimed: ServiceConfig | None = None
        self._claiming = False
        self._front = self._guarded(self._unclaimed, config.secret)
        _warm_up(config)
        if config.storage != "memory":  # its driver (pymongo: ~0.3 s) now, not in the claim
            importlib.import_module(f"processor_image.storage.{config.storage}")

    def _guarded(self, app: ASGIApp, secret: str) -> ASGIApp:
        if not secret:
            return app
        return ManagerOnly(app, secret=secret, allowed_hosts=self._config.allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Lifespan goes to the app; requests through the current front."""
        if scope["type"] not in ("http", "websocket"):
            await self._app(scope, receive, send)
            return
        await self._front(scope, receive, send)

    # -- before the claim -------------------------------------------------------------------

    async def _unclaimed(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1013, "reason": "NOT_CLAIMED"})
            return
        method, path = scope["method"], scope["path"]
        if method == "GET" and path == "/health":
            health = HealthResponse(
                status="healthy",
                processor_id=self._config.processor_id,
                uptime=time.monotonic() - self._started,
            )
            await _reply(send, 200, msgspec.json.encode(health))
        elif method == "POST" and path == CLAIM_PATH:
            await self._claim(receive, send)
        else:
            await _error(send, 409, "NOT_CLAIMED", "this processor serves no session yet")

    async def _claim(self, receive: Receive, send: Send) -> None:
        body = await _read_body(receive, MAX_CLAIM_BYTES)
        if body is None:
            await _error(send, 413, "BODY_TOO_LARGE", f"a claim is at most {MAX_CLAIM_BYTES} B")
            return
        try:
            claim = msgspec.json.decode(body, type=ClaimRequest)
        except msgspec.ValidationError as exc:
            await _error(send, 422, "VALIDATION_ERROR", str(exc))
            return
        except msgspec.DecodeError as exc:
            await _error(send, 422, "INVALID_JSON", str(exc))
            return
        if self._claiming or self._claimed is not None:
            await _error(send, 409, "ALREADY_CLAIMED", "this processor is claimed already")
            return
        self._claiming = True
        try:
            await self._become(claim, send)
        finally:
            self._claiming = False

    async def _become(self, claim: ClaimRequest, send: Send) -> None:
        env = {**self._environ, **claim.env}
        env.update({k: self._environ[k] for k in _KEPT if k in self._environ})
        try:
            config = ServiceConfig.from_env(env)
        except ConfigError as exc:
            await _error(send, 422, "CLAIM_INVALID", str(exc))
            return
        try:  # a MongoDB knowledge base connects and loads its patterns: off the loop
            runtime = await asyncio.to_thread(Runtime, config)
        except Exception as exc:
            log.exception("claim failed")
            await _error(send, 503, "CLAIM_FAILED", f"the processor did not open: {exc}")
            return
        self._litestar.state.runtime = runtime
        self._litestar.state.config = config
        self._claimed = config
        self._front = self._guarded(self._serving, config.secret)
        log.info("claimed", extra={"processor_id": config.processor_id})
        reply = ClaimResponse(
            status="claimed", processor_id=config.processor_id, kb_id=config.kb_id
        )
        await _reply(send, 200, msgspec.json.encode(reply))

    # -- after the claim --------------------------------------------------------------------

    async def _serving(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == CLAIM_PATH:
            await _error(send, 409, "ALREADY_CLAIMED", "this processor is claimed already")
            return
        await self._app(scope, receive, send)


def _warm_up(config: ServiceConfig) -> None:
    """Run the engine once on a throwaway memory store, before the pool offers this processor.

    A forked processor shares its parent's pages until it writes to them; the first pass over
    the engine's code and data copies the pages it touches. Paying that here, while nobody
    waits, keeps it out of the claim and the session's first requests (with the fork server:
    create -> ready p50 72 -> 52 ms in ``bench/create.py``, loaded machine).
    """
    warm = ServiceConfig(
        processor_id=f"{config.processor_id}-warm-up",
        storage="memory",
        engine_core=config.engine_core,
    )
    runtime = Runtime(warm)
    try:
        processor = runtime.processor
        for symbols in (["a"], ["b", "c"], ["a"], ["b"]):
            processor.observe(symbols, [], {"e": 1.0}, "warm-up")
        processor.learn()
        processor.observe(["a"], [], {}, "warm-up")
        processor.predictions()
        processor.restore(processor.snapshot())
        msgspec.json.encode(processor.snapshot())
    finally:
        runtime.close()


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or ``None`` once it is over ``limit``."""
    parts: list[bytes] = []
    size = 0
    while True:
        message: dict[str, Any] = await receive()
        if message["type"] != "http.request":
            return b"".join(parts)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


async def _error(send: Send, status: int, code: str, message: str) -> None:
    await _reply(send, status, msgspec.json.encode(error_body(status, code, message)))


async def _reply(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
