"""Docker SDK calls run on threads of their own, never on the pool name lookups use."""

from __future__ import annotations

import asyncio
import threading

from session_manager.backends.docker_containers import docker_call


async def test_stuck_engine_calls_leave_name_lookups_free() -> None:
    # Calls stuck on an unreachable node (here: waiting on an event) used to hold every
    # thread of asyncio's default pool, so getaddrinfo for the proxy and Redis waited too.
    release = threading.Event()
    stuck = [asyncio.ensure_future(docker_call(release.wait, 10)) for _ in range(12)]
    try:
        await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        resolved = await asyncio.wait_for(loop.getaddrinfo("localhost", 80), timeout=5)
        assert resolved
        assert not any(task.done() for task in stuck)
    finally:
        release.set()
        await asyncio.gather(*stuck)
