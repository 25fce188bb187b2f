"""The reaper and reconciler against real containers: idle sessions hibernate out of their
container and come back in a new one, orphans go, live containers are adopted, lost ones are
replaced from a snapshot or end the session."""

from __future__ import annotations

import docker

from session_manager.backends.docker import DockerBackend
from tests.docker.test_docker_sessions import containers_of, observe
from tests.processes import processor_spec
from tests.support.docker_engine import LEASE_S, RECONCILE_S, docker_settings
from tests.support.manager import (
    ManagerProcessFactory,
    SettingsFactory,
    StartManager,
    auth,
    busy_session,
    status_of,
    view,
)
from tests.support.timing import wait_for


def exists(client: docker.DockerClient, container_id: str) -> bool:
    return bool(client.api.containers(all=True, filters={"id": container_id}))


async def test_a_killed_managers_successor_adopts_live_containers_and_removes_orphans(
    manager_process: ManagerProcessFactory,
    start_manager: StartManager,
    make_settings: SettingsFactory,
    docker_client: docker.DockerClient,
) -> None:
    settings = docker_settings(make_settings, orphan_grace_s=0)
    first = manager_process(settings)
    first_client = await first.start()
    session = await first_client.create()
    await observe(first_client, session, "before-the-crash")
    await first_client.aclose()
    (live,) = containers_of(docker_client, session["session_id"])
    first.kill()  # SIGKILL: its lease expires instead of being handed over
    # A container the dead manager started but never recorded (started after the kill, so
    # that the first manager's own reconciler cannot be the one removing it).
    backend = DockerBackend.from_settings(settings)
    try:
        orphan = await backend.start(processor_spec())
    finally:
        await backend.close()

    second = await start_manager(settings)

    async def orphan_removed() -> bool:
        return not exists(docker_client, orphan.ref)

    assert await wait_for(orphan_removed, timeout_s=LEASE_S + 2 * RECONCILE_S + 15)
    assert exists(docker_client, live.id)
    stm = await second.client.get(f"/session/{session['session_id']}/stm", headers=auth(session))
    assert stm.json()["stm"] == [["before-the-crash"]]
    assert "kato_orphans_removed_total 1.0" in (await second.client.get("/metrics")).text


async def test_a_removed_container_is_recovered_with_its_acknowledged_writes(
    start_manager: StartManager, make_settings: SettingsFactory, docker_client: docker.DockerClient
) -> None:
    """JOURNAL=on (default): checkpoint + journal replayed into a new container."""
    manager = await start_manager(docker_settings(make_settings))
    session = await manager.create()
    base, headers = f"/session/{session['session_id']}", auth(session)
    for word in ("a", "b"):
        reply = await manager.client.post(
            f"{base}/observe", json={"strings": [word]}, headers=headers
        )
        assert reply.status_code == 200
    (container,) = containers_of(docker_client, session["session_id"])
    container.remove(force=True)
    stm = await manager.client.get(f"{base}/stm", headers=headers)
    assert stm.status_code == 200, stm.text
    assert stm.json()["stm"] == [["a"], ["b"]]
    (replacement,) = containers_of(docker_client, session["session_id"])
    assert replacement.id != container.id


async def test_a_container_removed_behind_the_managers_back_ends_the_session(
    start_manager: StartManager, make_settings: SettingsFactory, docker_client: docker.DockerClient
) -> None:
    """With the journal off and no snapshot, the state is gone: the session ends."""
    manager = await start_manager(docker_settings(make_settings, journal="off"))
    session = await manager.create()
    (container,) = containers_of(docker_client, session["session_id"])
    container.remove(force=True)

    async def ended() -> bool:
        reply = await manager.client.get(f"/session/{session['session_id']}", headers=auth(session))
        return reply.status_code == 410

    assert await wait_for(ended, timeout_s=2 * RECONCILE_S + 15)
    reply = await manager.client.get(f"/session/{session['session_id']}", headers=auth(session))
    assert reply.json()["error"]["details"]["reason"] == "processor_lost"


async def test_a_dead_container_with_a_snapshot_comes_back_in_a_new_container(
    start_manager: StartManager, make_settings: SettingsFactory, docker_client: docker.DockerClient
) -> None:
    manager = await start_manager(docker_settings(make_settings, orphan_grace_s=0))
    session = await manager.create()
    await observe(manager, session, "kept")
    record = await status_of(manager, session)
    processors = manager.app.state.processors  # a snapshot kept from earlier, as the manager
    state = await processors.get_state(record["endpoint"], processor_id=session["session_id"])
    await manager.app.state.store.save_snapshot(session["session_id"], state.snapshot)
    (old,) = containers_of(docker_client, session["session_id"])
    old.kill()  # exited, not removed: the reconciler must also clear it away

    async def replaced() -> bool:
        current = containers_of(docker_client, session["session_id"])
        record = await status_of(manager, session)
        ready = record["status"] == "ready" and record["ref"] != old.id
        return ready and [c.id for c in current] == [record["ref"]]

    assert await wait_for(replaced, timeout_s=4 * RECONCILE_S + 15)
    stm = await manager.client.get(f"/session/{session['session_id']}/stm", headers=auth(session))
    assert stm.json()["stm"] == [["kept"]]


async def test_the_reaper_hibernates_an_idle_container_and_a_request_brings_it_back(
    start_manager: StartManager, make_settings: SettingsFactory, docker_client: docker.DockerClient
) -> None:
    manager = await start_manager(
        docker_settings(make_settings, idle_timeout_s=2, reap_interval_s=0.5)
    )
    session = await busy_session(manager)
    before = await view(manager, session)
    (old,) = containers_of(docker_client, session["session_id"])

    async def hibernated() -> bool:
        return (await status_of(manager, session))["status"] == "hibernated"

    assert await wait_for(hibernated, timeout_s=2 + 0.5 + 15)
    assert containers_of(docker_client, session["session_id"]) == []
    assert await view(manager, session) == before  # the request restores it first
    (new,) = containers_of(docker_client, session["session_id"])
    assert new.id != old.id
