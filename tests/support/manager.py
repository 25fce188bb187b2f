"""A running session manager for tests: in-process (``Manager``) or as a process, and calls on it.

* ``Manager``: its URL, an ``httpx.AsyncClient`` for it, a ``kato_sessions.AsyncClient``
  (``kato``: the test API key, the admin token), the app (in-process runs only).
* ``ManagerProcess``: ``python -m session_manager`` as a real process, for crash and restart
  tests; ``kill()`` sends SIGKILL, ``stop()`` SIGTERM.
* ``auth``, ``status_of``, ``busy_session``, ``view``: what many tests ask of a session.
* ``API_KEY``/``CREATOR``: the test deployment's API key (tenant ``default``, scope
  ``sessions:create``) that ``Manager.create`` sends; ``API_KEYS`` is the document configuring it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
from kato_sessions import AsyncClient

from session_manager.sessions.tokens import hash_token
from session_manager.settings import Settings
from tests.support.net import free_port

__all__ = (
    "ADMIN",
    "ADMIN_TOKEN",
    "API_KEY",
    "API_KEYS",
    "CREATOR",
    "Manager",
    "ManagerProcess",
    "ManagerProcessFactory",
    "SettingsFactory",
    "StartManager",
    "auth",
    "busy_session",
    "pool_full",
    "pool_stats",
    "status_of",
    "view",
)

ADMIN_TOKEN = "admin-token-for-tests-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
API_KEY = "api-key-for-tests-0123456789abcdef"
CREATOR = {"Authorization": f"Bearer {API_KEY}"}
API_KEYS = msgspec.json.encode(
    {"keys": [{"tenant": "default", "scopes": ["sessions:create"], "sha256": hash_token(API_KEY)}]}
).decode()
"""The ``API_KEYS`` document of test deployments: one key, stored as its hash."""

_REPO = Path(__file__).resolve().parents[2]

SettingsFactory = Callable[..., Settings]
"""``make_settings(**fields)``: ``Settings`` for this test; names are ``Settings`` fields."""


class Manager:
    """A running manager: its URL, a client for it, the app (in-process runs only)."""

    def __init__(self, base_url: str, app: Any = None) -> None:
        self.base_url = base_url
        self.ws_url = "ws" + base_url.removeprefix("http")
        self.app = app
        self.client = httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=60)
        self.kato = AsyncClient(base_url, api_key=API_KEY, admin_token=ADMIN_TOKEN)
        """The project's client on this manager, for tests that talk to it as a user would."""
        self.admin = ADMIN
        self.creator = CREATOR

    async def create(self, expect: int = 201, **body: Any) -> dict[str, Any]:
        """``POST /session/create`` with the test API key (``user_id`` defaults to ``alice``)."""
        body.setdefault("user_id", "alice")
        response = await self.client.post("/session/create", json=body, headers=self.creator)
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
        await self.kato.aclose()


StartManager = Callable[..., Awaitable[Manager]]
"""``start_manager(settings=None, *, backend=None, clock=None)``: an in-process manager."""


class ManagerProcess:
    """``python -m session_manager`` in its own process, for crash and restart tests."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.log_level = "WARNING"
        """``LOG_LEVEL`` of the process; a test reading its log may lower it before ``start``."""
        self.command = [sys.executable, "-m", "session_manager"]
        """What starts it; ``kato-sessions serve`` must do exactly the same."""
        self.process: subprocess.Popen[bytes] | None = None

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
        for field in self.settings.__struct_fields__:
            value = getattr(self.settings, field)
            if value is None or field in ("admin_token_generated", "generated_api_key"):
                continue
            env[field.upper()] = str(value)
        env["LISTEN_PORT"] = str(self.port)
        env["LOG_LEVEL"] = self.log_level
        return env

    async def start(self) -> Manager:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                env=self._env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(_REPO),
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

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Manager]:
        """The started manager; its sessions ended and the process stopped on the way out."""
        manager = await self.start()
        try:
            yield manager
        finally:
            await manager.end_all()
            await manager.aclose()
            self.stop()

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


def auth(session: dict[str, Any]) -> dict[str, str]:
    """The ``Authorization`` header for a created session."""
    return {"Authorization": f"Bearer {session['token']}"}


async def observed(manager: Manager, session: dict[str, Any], *symbols: str) -> None:
    """Observe each symbol through the manager, one request each; every one acknowledged."""
    for symbol in symbols:
        reply = await manager.client.post(
            f"/session/{session['session_id']}/observe",
            json={"strings": [symbol]},
            headers=auth(session),
        )
        assert reply.status_code == 200, reply.text


async def status_of(manager: Manager, session: dict[str, Any]) -> dict[str, Any]:
    """The admin view of ``session`` (status, ref, endpoint, deadlines)."""
    reply = await manager.client.get(
        f"/admin/sessions/{session['session_id']}", headers=manager.admin
    )
    body: dict[str, Any] = reply.json()
    return body


async def pool_stats(manager: Manager) -> dict[str, Any]:
    """The warm pool's figures in ``/admin/stats``."""
    reply = await manager.client.get("/admin/stats", headers=ADMIN)
    assert reply.status_code == 200, reply.text
    pool: dict[str, Any] = reply.json()["warm_pool"]
    return pool


async def pool_full(manager: Manager, size: int, wait_s: float = 90) -> dict[str, Any]:
    """Wait (bounded) until the warm pool holds ``size`` waiting processors; its figures."""
    deadline = time.monotonic() + wait_s
    while (pool := await pool_stats(manager))["ready"] < size:
        assert time.monotonic() < deadline, pool
        await asyncio.sleep(0.1)
    return pool


async def busy_session(manager: Manager) -> dict[str, Any]:
    """A session that learned a-b-c, changed a gene and holds a, b in STM."""
    session = await manager.create(genes={"recall_threshold": 0.3})
    base, headers = f"/session/{session['session_id']}", auth(session)
    for word in ("a", "b", "c"):
        await manager.client.post(f"{base}/observe", json={"strings": [word]}, headers=headers)
    await manager.client.post(f"{base}/learn", headers=headers)
    await manager.client.post(
        f"{base}/genes/update", json={"genes": {"max_predictions": 7}}, headers=headers
    )
    for word in ("a", "b"):
        await manager.client.post(f"{base}/observe", json={"strings": [word]}, headers=headers)
    return session


async def view(manager: Manager, session: dict[str, Any]) -> list[Any]:
    """What the session's owner sees of its state: STM, two genes, predictions."""
    base, headers = f"/session/{session['session_id']}", auth(session)
    return [
        (await manager.client.get(f"{base}/stm", headers=headers)).json(),
        (await manager.client.get(f"{base}/gene/max_predictions", headers=headers)).json(),
        (await manager.client.get(f"{base}/gene/recall_threshold", headers=headers)).json(),
        (await manager.client.get(f"{base}/predictions", headers=headers)).json(),
    ]
