"""The processor service: one Litestar app hosting one processor (spec §7)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.openapi import OpenAPIConfig

from processor_image.service.claim import ClaimGate
from processor_image.service.config import ServiceConfig
from processor_image.service.errors import EXCEPTION_HANDLERS
from processor_image.service.fence import FENCE_ROUTES
from processor_image.service.guard import ASGIApp, ManagerOnly
from processor_image.service.routes import ROUTES
from processor_image.service.runtime import Runtime
from processor_image.service.ws import message, ws

__all__ = ("create_app", "serving_app")


def create_app(config: ServiceConfig) -> Litestar:
    """Build the app; the processor and its knowledge base open in the lifespan.

    A pooled processor (``AWAIT_CLAIM``) opens them at its claim instead (``service.claim``).
    """

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if not config.await_claim:
            app.state.runtime = Runtime(config)
        try:
            yield
        finally:
            runtime = app.state.get("runtime")
            if runtime is not None:
                runtime.close()

    return Litestar(
        route_handlers=[*ROUTES, *FENCE_ROUTES, message, ws],
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=config.max_body_bytes,
        openapi_config=OpenAPIConfig(title="KATO processor", version="1.0.0", path="/schema"),
        debug=False,
    )


def serving_app(config: ServiceConfig, environ: Mapping[str, str] | None = None) -> ASGIApp:
    """The app as served: behind ``ManagerOnly`` when the manager gave it a secret.

    A pooled processor is served behind ``ClaimGate`` (its identity comes with the claim).
    """
    app = create_app(config)
    if config.await_claim:
        return ClaimGate(app, config, environ or {})
    if not config.secret:
        return app
    return ManagerOnly(app, secret=config.secret, allowed_hosts=config.allowed_hosts)
