"""Loopback networking for tests and benchmarks: a free port, and an ASGI app on a real server."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

__all__ = ("free_port", "serve", "serve_config", "serving")


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def serve(app: Any, **options: Any) -> AsyncIterator[str]:
    """Run ``app`` under a real uvicorn server on a free loopback port, in this event loop."""
    config = uvicorn.Config(
        app, log_level="warning", lifespan="on", ws="websockets-sansio", **options
    )
    async with serve_config(config) as url:
        yield url


@contextlib.asynccontextmanager
async def serve_config(config: uvicorn.Config) -> AsyncIterator[str]:
    """Run a server of ``config`` on a free loopback port (its host and port are ignored)."""
    async with serving(config) as (url, _):
        yield url


@contextlib.asynccontextmanager
async def serving(config: uvicorn.Config) -> AsyncIterator[tuple[str, uvicorn.Server]]:
    """``serve_config``, with the server (a test may shut it down while it serves).

    The socket is bound before the server starts, so no other process can take the port.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    scheme = "https" if config.ssl_certfile else "http"
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"{scheme}://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)
        sock.close()
