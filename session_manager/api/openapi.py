"""The manager's OpenAPI: served with packaged Swagger UI assets, processor routes included.

Litestar's UIs load their JavaScript from CDNs, so ``/schema`` was blank on a machine without
internet. Here Swagger UI (``/schema`` and ``/schema/swagger``) loads the files of the
``swagger-ui-bundle-v2`` package (Swagger UI 5, which reads OpenAPI 3.1), served under
``/schema/assets/``. The document itself is completed once, when first served: the
processor's own routes under ``/session/{session_id}`` (what the proxy forwards, so clients
find them in one place), and every error answer with the error JSON (``ErrorResponse``)
instead of Litestar's ``{status_code, detail}``.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any

import msgspec
from litestar import Request, Response, Router, get
from litestar.datastructures import CacheControlHeader
from litestar.exceptions import NotFoundException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.params import FromPath
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

from processor_image import contract
from session_manager.proxy.manager_only import MANAGER_ONLY_PATHS

__all__ = ("openapi_config",)

_CACHED = CacheControlHeader(max_age=3600)
"""Packaged files change only with the package: browsers may keep them an hour."""

_ASSETS = Path(str(swagger_ui_path))
_SERVED = frozenset(
    {
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
        "swagger-ui.css",
        "favicon-32x32.png",
    }
)
_PROCESSOR_PREFIX = "/session/{session_id}"
_COMPLETED = "x-kato-completed"
_SESSION_ID = {
    "name": "session_id",
    "in": "path",
    "required": True,
    "description": "The session's id (from create)",
    "schema": {"type": "string"},
}
_SESSION_TOKEN = {
    "name": "Authorization",
    "in": "header",
    "required": False,
    "description": "Bearer <session token> (from create; not needed with SESSION_AUTH=none)",
    "schema": {"type": "string"},
}
_PROXY_ERRORS = {
    "401": "UNAUTHORIZED: missing or wrong session token",
    "404": "SESSION_NOT_FOUND",
    "410": "SESSION_EXPIRED: the session ended; details.reason says why",
    "429": "CAPACITY_EXCEEDED: too many requests in flight for this session",
    "502": "PROCESSOR_UNAVAILABLE",
    "503": "SESSION_NOT_READY or STORE_UNAVAILABLE (Retry-After)",
    "504": "PROCESSOR_TIMEOUT",
    "507": "PROCESSOR_OUT_OF_MEMORY",
}

_GATEWAY_ERRORS = {
    "404": "SESSION_NOT_FOUND: no processor is registered under this id",
    "422": "INVALID_JSON or VALIDATION_ERROR",
    "502": "PROCESSOR_UNAVAILABLE: the processor could not be reached",
    "503": "PROCESSOR_UNAVAILABLE: the processor failed its health check",
}
"""What the gateway's routes answer besides success (a processor's own errors pass as-is)."""


def _processor_document() -> dict[str, Any]:
    """The processor service's OpenAPI document, built in-process (no processor started)."""
    document = contract.openapi_document()
    # Processor components get a prefix: the manager has schemas of the same names.
    renamed = msgspec.json.encode(document).replace(
        b'"#/components/schemas/', b'"#/components/schemas/Processor'
    )
    result: dict[str, Any] = msgspec.json.decode(renamed)
    return result


def _with_processor_routes(document: dict[str, Any]) -> None:
    """Add the processor's routes, as the proxy serves them, under ``/session/{session_id}``."""
    processor = _processor_document()
    error = {"$ref": "#/components/schemas/ProcessorErrorResponse"}
    paths: dict[str, Any] = document.setdefault("paths", {})
    for path, item in processor.get("paths", {}).items():
        if path in MANAGER_ONLY_PATHS:  # the proxy refuses them (404)
            continue
        for operation in item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            operation["tags"] = ["processor (proxied)"]
            operation["operationId"] = "Proxied" + str(operation.get("operationId", path))
            parameters = operation.get("parameters", [])
            operation["parameters"] = [_SESSION_ID, _SESSION_TOKEN, *parameters]
            for status, description in _PROXY_ERRORS.items():
                operation["responses"].setdefault(
                    status,
                    {
                        "description": description,
                        "content": {"application/json": {"schema": error}},
                    },
                )
        paths[_PROCESSOR_PREFIX + path] = item
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name, definition in processor.get("components", {}).get("schemas", {}).items():
        schemas["Processor" + name] = definition


def _errors_as_error_json(document: dict[str, Any]) -> None:
    """Every 4xx/5xx answer documented with the error JSON.

    Litestar documents a ``400`` of its own shape for every route with parameters; the manager
    answers a bad parameter ``422 VALIDATION_ERROR`` instead (``api.errors``), so that one is
    documented in its place.
    """
    error = {"$ref": "#/components/schemas/ErrorResponse"}
    for item in document.get("paths", {}).values():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            responses: dict[str, Any] = operation.get("responses", {})
            if "gateway" in operation.get("tags", []):
                for status, description in _GATEWAY_ERRORS.items():
                    responses.setdefault(status, {"description": description})
            default = responses.get("400", {})
            if default.get("description", "").startswith("Bad request syntax"):
                del responses["400"]
                responses.setdefault(
                    "422",
                    {
                        "description": "VALIDATION_ERROR",
                        "content": {"application/json": {"schema": error}},
                    },
                )
            for status, response in responses.items():
                if status[:1] in ("4", "5") and "$ref" not in response:
                    response["content"] = {"application/json": {"schema": error}}


def completed(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` (Litestar's cached dict), completed in place the first time it is served."""
    if not document.get(_COMPLETED):
        _with_processor_routes(document)
        _errors_as_error_json(document)
        document[_COMPLETED] = True
    return document


class _Json(JsonRenderPlugin):
    """``/schema/openapi.json``: the completed document."""

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        """The document as JSON."""
        return super().render(request, completed(openapi_schema))


class _SwaggerUI(SwaggerRenderPlugin):
    """Swagger UI on the packaged files; its router also serves them."""

    def __init__(self) -> None:
        super().__init__(
            js_url="/schema/assets/swagger-ui-bundle.js",
            css_url="/schema/assets/swagger-ui.css",
            standalone_preset_js_url="/schema/assets/swagger-ui-standalone-preset.js",
            favicon="<link rel='icon' type='image/png' href='/schema/assets/favicon-32x32.png'>",
            path=["/swagger"],
        )

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        """The Swagger UI page, the completed document embedded."""
        return super().render(request, completed(openapi_schema))

    def receive_router(self, router: Router) -> None:
        """Serve the assets beside the page."""
        router.register(_asset)


@get("/assets/{name:str}", include_in_schema=False, sync_to_thread=False, cache_control=_CACHED)
def _asset(name: FromPath[str]) -> Response[bytes]:
    """One of Swagger UI's files from the installed package."""
    if name not in _SERVED:
        raise NotFoundException(f"no asset {name}")
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Response((_ASSETS / name).read_bytes(), media_type=media_type)


def openapi_config() -> OpenAPIConfig:
    """``/schema`` (Swagger UI), ``/schema/swagger``, ``/schema/openapi.json``: no CDN."""
    return OpenAPIConfig(
        title="kato-sessions manager",
        version="0.1.0",
        path="/schema",
        render_plugins=[_SwaggerUI(), _Json()],  # the first is also served at /schema
    )
