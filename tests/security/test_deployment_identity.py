"""Finding 1: deployments on one host never stop each other's processors.

Two managers with default settings (no ``MANAGER_ID``, each its own ``DATA_DIR`` and embedded
Redis) used to derive the same id from the default Redis prefix; each one's reconciler then
removed the other's processors as orphans. Now each deployment generates its own id, once, and
keeps it in its Redis.

Safety: a test that runs managers without ``MANAGER_ID`` must not be able to remove processors
of other test runs on this machine if the derivation were wrong. Both managers use a Redis
prefix unique to the test (so even the old prefix-derived id is unique), and they first run with
an orphan grace of an hour (nothing is removed) while the test checks that their ids differ and
are not prefix-derived; only then do they run with a grace of 0.
"""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from pathlib import Path
from subprocess import Popen
from typing import Any

from session_manager.backends.process import MANAGER_MARKER, SESSION_MARKER
from tests.support.manager import (
    ADMIN,
    Manager,
    ManagerProcess,
    ManagerProcessFactory,
    SettingsFactory,
    StartManager,
    auth,
    status_of,
)
from tests.support.pids import processes_of
from tests.support.timing import wait_for

_INTERVAL_S = 0.5
_ROUNDS = 3


def _unique_prefix() -> str:
    """A Redis prefix no other run uses: even an id derived from it would touch nothing else."""
    return f"t13-{uuid.uuid4().hex[:10]}:"


async def _deployment_id(manager: Manager) -> str:
    stats = await manager.client.get("/admin/stats", headers=ADMIN)
    assert stats.status_code == 200, stats.text
    manager_id: str = stats.json()["manager_id"]
    return manager_id


async def _observe(manager: Manager, session: dict[str, Any], symbol: str) -> list[Any]:
    base, headers = f"/session/{session['session_id']}", auth(session)
    reply = await manager.client.post(
        f"{base}/observe", json={"strings": [symbol]}, headers=headers
    )
    assert reply.status_code == 200, reply.text
    stm: list[Any] = (await manager.client.get(f"{base}/stm", headers=headers)).json()["stm"]
    return stm


def _stray(manager_id: str) -> Popen[bytes]:
    """A process marked as ``manager_id``'s processor that its Redis knows nothing of."""
    env = {"PATH": os.environ["PATH"], MANAGER_MARKER: manager_id, SESSION_MARKER: "stray"}
    return Popen(["sleep", "120"], env=env, start_new_session=True)


def _kill_marked(*manager_ids: str) -> dict[int, str | None]:
    """SIGKILL whatever processors still carry these ids (teardown); what was found."""
    leaked: dict[int, str | None] = {}
    for manager_id in manager_ids:
        leaked |= processes_of(manager_id)
    for pid in leaked:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    return leaked


async def test_two_default_deployments_on_one_host_never_touch_each_others_processors(
    manager_process: ManagerProcessFactory, make_settings: SettingsFactory, tmp_path: Path
) -> None:
    prefix = _unique_prefix()
    old_derived_id = prefix.rstrip(":")

    def deployment(name: str, orphan_grace_s: float) -> ManagerProcess:
        # redis_url="" and manager_id="" are unset: the embedded Redis and the default id.
        settings = make_settings(
            redis_url="",
            manager_id="",
            redis_prefix=prefix,
            data_dir=str(tmp_path / name),
            reconcile_interval_s=_INTERVAL_S,
            orphan_grace_s=orphan_grace_s,
            warm_pool_size=0,  # the processors are counted below
        )
        assert settings.redis_url is None
        assert settings.manager_id == ""
        return manager_process(settings)

    # 1. Harmless first run (nothing is an orphan for an hour): learn each deployment's id.
    first = {name: deployment(name, orphan_grace_s=3600) for name in ("a", "b")}
    ids = {}
    for name, process in first.items():
        manager = await process.start()
        ids[name] = await _deployment_id(manager)
        await manager.aclose()
        process.stop()
    assert ids["a"] != ids["b"]
    assert old_derived_id not in ids.values()
    assert all(value.startswith("kato-") for value in ids.values())

    # 2. The same deployments again, removing orphans at once, with sessions on both.
    processes = {name: deployment(name, orphan_grace_s=0) for name in ("a", "b")}
    managers: dict[str, Manager] = {}
    started: list[Popen[bytes]] = []
    try:
        for name, process in processes.items():
            managers[name] = await process.start()
            assert await _deployment_id(managers[name]) == ids[name]  # kept in its Redis
        sessions = {
            name: [await manager.create(user_id=f"{name}{i}") for i in range(2)]
            for name, manager in managers.items()
        }
        for name, manager in managers.items():
            for session in sessions[name]:
                assert await _observe(manager, session, "before") == [["before"]]
        pids = {name: processes_of(ids[name]) for name in ids}
        assert {name: set(p.values()) for name, p in pids.items()} == {
            name: {s["session_id"] for s in sessions[name]} for name in ids
        }

        # Each round, each deployment gets a stray of its own (its id, unknown to its Redis):
        # its removal shows a reconcile pass ran while the other deployment's processors ran
        # next to it; three rounds are at least three passes of each.
        for _ in range(_ROUNDS):
            strays = {name: _stray(ids[name]) for name in ids}
            started.extend(strays.values())

            async def strays_removed(strays: dict[str, Popen[bytes]] = strays) -> bool:
                return all(stray.poll() is not None for stray in strays.values())

            assert await wait_for(strays_removed, timeout_s=_INTERVAL_S * 4 + 10)
            for name in ids:
                assert processes_of(ids[name]) == pids[name]

        for name, manager in managers.items():
            assert processes_of(ids[name]) == pids[name]  # same pids: none removed or replaced
            for session in sessions[name]:
                assert (await status_of(manager, session))["status"] == "ready"
                assert await _observe(manager, session, "after") == [["before"], ["after"]]
            metrics = (await manager.client.get("/metrics")).text
            assert f"kato_orphans_removed_total {_ROUNDS}.0" in metrics  # its strays only
    finally:
        for manager in managers.values():
            await manager.end_all()
            await manager.aclose()
        for process in processes.values():
            process.stop()
        for stray in started:
            stray.kill()
            stray.wait()
        leaked = _kill_marked(*ids.values())
    assert leaked == {}


async def test_replicas_sharing_a_redis_share_the_generated_id(
    start_manager: StartManager, make_settings: SettingsFactory
) -> None:
    settings = make_settings(manager_id="", redis_prefix=_unique_prefix())
    first = await start_manager(settings)
    second = await start_manager(settings)
    shared = await _deployment_id(first)
    assert shared.startswith("kato-")
    assert await _deployment_id(second) == shared
    session = await first.create()
    try:
        assert set(processes_of(shared).values()) == {session["session_id"]}
        reply = await second.client.post(
            f"/session/{session['session_id']}/observe",
            json={"strings": ["x"]},
            headers=auth(session),
        )
        assert reply.status_code == 200
    finally:
        await first.end_all()
        assert await wait_for(lambda: _none_marked(shared), timeout_s=10)


async def _none_marked(manager_id: str) -> bool:
    return not processes_of(manager_id)


async def test_an_explicit_manager_id_wins_over_the_stored_one(
    start_manager: StartManager, make_settings: SettingsFactory, manager_id: str
) -> None:
    default = make_settings(manager_id="", redis_prefix=_unique_prefix())
    generated = await _deployment_id(await start_manager(default))
    explicit = await start_manager(make_settings())
    assert generated != manager_id
    assert await _deployment_id(explicit) == manager_id
    session = await explicit.create()
    assert set(processes_of(manager_id).values()) == {session["session_id"]}
