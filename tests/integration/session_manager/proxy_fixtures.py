"""Real servers for the proxy tests: an echoing upstream and a uvicorn runner on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl

import msgspec
import uvicorn

Scope = dict[str, Any]


class EchoUpstream:
    """A processor stand-in that tells the test exactly what reached it.

    HTTP: answers ``{method, path, query, headers, body}``; ``?status=`` and ``?ctype=`` pick the
    status and content type, ``/slow?s=`` waits first, ``/big?n=`` streams ``n`` bytes.
    The response also carries hop-by-hop headers that the proxy must drop.
    WS ``/ws``: echoes text as text and bytes as bytes; ``"close:<code>:<reason>"`` makes it
    close; ``"headers"`` answers the handshake headers; every close it receives is recorded.
    """

    def __init__(self) -> None:
        self.closes: list[tuple[int, str]] = []
        self.requests = 0
        self.clients: set[tuple[str, int]] = set()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        else:
            await self._websocket(scope, receive, send)

    async def _http(self, scope: Scope, receive: Any, send: Any) -> None:
        self.requests += 1
        self.clients.add(tuple(scope["client"]))
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        query = dict(parse_qsl(scope["query_string"].decode()))
        if scope["path"] == "/slow":
            await asyncio.sleep(float(query.get("s", "1")))
        if scope["path"] == "/big":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")],
                }
            )
            size, chunk = int(query["n"]), b"x" * 65536
            while size > 0:
                part = chunk[: min(size, len(chunk))]
                size -= len(part)
                await send({"type": "http.response.body", "body": part, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        payload = json.dumps(
            {
                "method": scope["method"],
                "path": scope["raw_path"].decode(),
                "query": scope["query_string"].decode(),
                "headers": [[k.decode(), v.decode()] for k, v in scope["headers"]],
                "body": body.decode("latin-1"),
            }
        ).encode()
        status = int(query.get("status", "200"))
        headers = [
            (b"content-type", query.get("ctype", "application/json").encode()),
            (b"x-upstream", b"yes"),
            (b"connection", b"x-per-hop"),
            (b"x-per-hop", b"secret"),
            (b"keep-alive", b"timeout=5"),
        ]
        if status in (204, 304) or scope["method"] == "HEAD":
            headers.append((b"content-length", str(len(payload)).encode()))
            payload = b""
        else:
            headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _websocket(self, scope: Scope, receive: Any, send: Any) -> None:
        await receive()  # websocket.connect
        offered = scope.get("subprotocols") or []
        await send({"type": "websocket.accept", "subprotocol": offered[0] if offered else None})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                self.closes.append((message.get("code", 1005), message.get("reason") or ""))
                return
            text = message.get("text")
            if text is not None and text.startswith("close:"):
                _, code, reason = text.split(":", 2)
                await send({"type": "websocket.close", "code": int(code), "reason": reason})
                return
            if text == "headers":
                headers = {k.decode(): v.decode() for k, v in scope["headers"]}
                reply = json.dumps({"headers": headers, "query": scope["query_string"].decode()})
                await send({"type": "websocket.send", "text": reply})
            elif text is not None:
                await send({"type": "websocket.send", "text": text})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"]})


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def serve(app: Any, **options: Any) -> AsyncIterator[str]:
    """Run ``app`` under a real uvicorn server on a free loopback port, in this event loop."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", lifespan="on", ws="websockets-sansio", **options
    )
    scheme = "https" if options.get("ssl_certfile") else "http"
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)
        sock.close()


class ManualClock:
    """A clock the test moves by hand (the ``Clock`` protocol: ``now_ms``)."""

    def __init__(self, now_ms: int = 1_800_000_000_000) -> None:
        self.ms = now_ms

    def now_ms(self) -> int:
        return self.ms

    def advance(self, seconds: float) -> None:
        self.ms += int(seconds * 1000)


class ProxySession(msgspec.Struct, frozen=True):
    """A session the harness opened: its id and token."""

    id: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class _StandInSessions:
    """Until CORE's ``Sessions`` lands: resolve and touch with the agreed signatures."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.routes: dict[str, tuple[str, str]] = {}
        self.last_activity: dict[str, int] = {}

    async def resolve(self, session_id: str, authorization: str | None) -> Any:
        from session_manager.errors import SessionNotFound, Unauthorized

        if session_id not in self.routes:
            raise SessionNotFound("no such session", session_id=session_id)
        token, endpoint = self.routes[session_id]
        if authorization != f"Bearer {token}":
            raise Unauthorized("missing or wrong session token")
        return _Route(session_id=session_id, endpoint=endpoint)

    async def touch(self, session_id: str) -> None:
        self.last_activity[session_id] = self.clock.now_ms()


class _Route(msgspec.Struct, frozen=True):
    session_id: str
    endpoint: str


class ProxyHarness:
    """The manager on a real uvicorn server, sessions routed to an echo upstream or processors."""

    def __init__(self, base_url: str, app: Any, upstream: EchoUpstream, upstream_url: str) -> None:
        self.base_url = base_url
        self.ws_url = "ws" + base_url.removeprefix("http")
        self.app = app
        self.upstream = upstream
        self.upstream_url = upstream_url
        self.clock: ManualClock = app.state.clock

    async def open_session(self, endpoint: str | None = None) -> ProxySession:
        """A new session whose processor is the echo upstream (or ``endpoint``)."""
        session = ProxySession(id=uuid.uuid4().hex, token=uuid.uuid4().hex)
        self.app.state.sessions.routes[session.id] = (
            session.token,
            endpoint or self.upstream_url,
        )
        return session

    async def last_activity_ms(self, session_id: str) -> int | None:
        """The session's last activity as the manager recorded it."""
        await self.app.state.forwarder.activity.drain()
        value: int | None = self.app.state.sessions.last_activity.get(session_id)
        return value


@contextlib.asynccontextmanager
async def proxy_harness(
    *, read_timeout_s: float = 5.0, max_body_bytes: int | None = None
) -> AsyncIterator[ProxyHarness]:
    """Echo upstream + manager app with the proxy handlers, both real servers on loopback."""
    from litestar import Litestar, Request, Response
    from prometheus_client import CollectorRegistry, Counter, Histogram

    from session_manager.api.proxy import PROXY_HANDLERS
    from session_manager.errors import KatoError, error_body
    from session_manager.forwarding import Forwarder

    class Metrics:
        def __init__(self) -> None:
            registry = CollectorRegistry()
            self.proxy_requests = Counter("proxy_requests", "", ["status"], registry=registry)
            self.proxy_latency = Histogram("proxy_latency", "", registry=registry)

    class Settings(msgspec.Struct, frozen=True):
        proxy_connect_timeout_s: float = 1.0
        proxy_read_timeout_s: float = 5.0
        max_proxy_body_bytes: int = 16 * 1024 * 1024

    def on_error(_: Request[Any, Any, Any], exc: KatoError) -> Response[Any]:
        body = error_body(exc.status, exc.code, exc.message, exc.details)
        return Response(body, status_code=exc.status, headers=exc.headers)

    settings = Settings(proxy_read_timeout_s=read_timeout_s)
    if max_body_bytes is not None:
        settings = msgspec.structs.replace(settings, max_proxy_body_bytes=max_body_bytes)
    upstream = EchoUpstream()
    app = Litestar(list(PROXY_HANDLERS), exception_handlers={KatoError: on_error})
    clock = ManualClock()
    app.state.clock = clock
    app.state.sessions = _StandInSessions(clock)
    app.state.forwarder = Forwarder.from_settings(settings, Metrics())
    try:
        async with serve(upstream) as upstream_url, serve(app) as base_url:
            yield ProxyHarness(base_url, app, upstream, upstream_url)
    finally:
        await app.state.forwarder.aclose()
