"""Real servers for the proxy tests: an echoing upstream and a uvicorn runner on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl

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
async def serve(app: Any) -> AsyncIterator[str]:
    """Run ``app`` under a real uvicorn server on a free loopback port, in this event loop."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", ws="websockets-sansio")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)
        sock.close()
