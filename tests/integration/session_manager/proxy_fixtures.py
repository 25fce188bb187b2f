"""Real servers for the proxy tests: an echoing upstream, an echo backend, the harness."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import msgspec

from session_manager.backends.base import ProcessorHandle, ProcessorSpec
from tests.support.net import serve
from tests.support.timing import ManualClock

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
        self.active = 0
        self.max_active = 0

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
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            try:
                await asyncio.sleep(float(query.get("s", "1")))
            finally:
                self.active -= 1
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
        if status not in (204, 304):
            headers.append((b"content-length", str(len(payload)).encode()))
        if status in (204, 304) or scope["method"] == "HEAD":
            payload = b""
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


class ProxySession(msgspec.Struct, frozen=True):
    """A session the harness opened: its id and token."""

    id: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class EchoBackend:
    """A ``Backend`` whose processors are already running servers (the echo upstream).

    ``endpoint`` is where the next started session's processor is; tests change it to point
    a session at a closed port or a raw TCP server.
    """

    name = "echo"

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.running: dict[str, ProcessorHandle] = {}

    async def start(self, spec: ProcessorSpec) -> ProcessorHandle:
        handle = ProcessorHandle(
            backend=self.name,
            ref=spec.session_id,
            endpoint=self.endpoint,
            session_id=spec.session_id,
        )
        self.running[spec.session_id] = handle
        return handle

    async def stop(self, handle: ProcessorHandle) -> None:
        self.running.pop(handle.ref, None)

    async def is_alive(self, handle: ProcessorHandle) -> bool:
        return handle.ref in self.running

    async def list_owned(self) -> list[ProcessorHandle]:
        return list(self.running.values())

    async def exit_cause(self, handle: ProcessorHandle, processor_id: str) -> str | None:
        return None

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None


class ProxyHarness:
    """The real manager (Redis, lifecycle, proxy) whose sessions run on the echo upstream."""

    def __init__(
        self,
        manager: Any,
        backend: EchoBackend,
        upstream: EchoUpstream,
        upstream_url: str,
        clock: ManualClock,
    ) -> None:
        self.manager = manager
        self.base_url: str = manager.base_url
        self.ws_url: str = manager.ws_url
        self.app = manager.app
        self.backend = backend
        self.upstream = upstream
        self.upstream_url = upstream_url
        self.clock = clock

    async def open_session(self, endpoint: str | None = None) -> ProxySession:
        """A new session (``POST /session/create``) on the echo upstream, or on ``endpoint``."""
        self.backend.endpoint = endpoint or self.upstream_url
        try:
            created = await self.manager.create(user_id="proxy-tests")
        finally:
            self.backend.endpoint = self.upstream_url
        return ProxySession(id=created["session_id"], token=created["token"])

    async def last_activity_ms(self, session_id: str) -> int | None:
        """The session's last activity in Redis, once the proxy's pending touches are done."""
        await self.app.state.forwarder.activity.drain()
        record = await self.app.state.store.get(session_id)
        return None if record is None else int(record.last_activity)


@contextlib.asynccontextmanager
async def echo_manager(
    start_manager: Callable[..., Awaitable[Any]],
    make_settings: Callable[..., Any],
    **settings: Any,
) -> AsyncIterator[ProxyHarness]:
    """The echo upstream on loopback and a manager (with ``settings``) routing sessions to it."""
    upstream = EchoUpstream()
    async with serve(upstream) as upstream_url:
        backend, clock = EchoBackend(upstream_url), ManualClock()
        manager = await start_manager(make_settings(**settings), backend=backend, clock=clock)
        yield ProxyHarness(manager, backend, upstream, upstream_url, clock)
