"""The session API with ``BACKEND=docker``: one real, hardened container per session."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import docker
import pytest
from docker.errors import NotFound
from websockets.asyncio.client import connect

from session_manager.backends.base import MANAGER_LABEL, SESSION_LABEL
from tests.support.docker_engine import PROCESSOR_IMAGE
from tests.support.manager import Manager, SettingsFactory, StartManager, auth


def containers_of(client: docker.DockerClient, session_id: str) -> list[Any]:
    """The session's containers; one being removed meanwhile is simply not among them."""
    rows = client.api.containers(all=True, filters={"label": f"{SESSION_LABEL}={session_id}"})
    found = []
    for row in rows:
        with contextlib.suppress(NotFound):
            found.append(client.containers.get(row["Id"]))
    return found


async def observe(manager: Manager, session: dict[str, Any], *strings: str) -> dict[str, Any]:
    response = await manager.client.post(
        f"/session/{session['session_id']}/observe",
        json={"strings": list(strings)},
        headers=auth(session),
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture(name="docker_manager")
async def fx_docker_manager(start_manager: StartManager, make_settings: SettingsFactory) -> Manager:
    return await start_manager(
        make_settings(backend="docker", docker_publish="loopback", docker_image=PROCESSOR_IMAGE)
    )


async def test_session_runs_in_its_own_hardened_container(
    docker_manager: Manager, docker_client: docker.DockerClient, manager_id: str
) -> None:
    session = await docker_manager.create()
    (container,) = containers_of(docker_client, session["session_id"])
    assert container.status == "running"
    assert container.labels[MANAGER_LABEL] == manager_id
    host = container.attrs["HostConfig"]
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["ReadonlyRootfs"] is True
    assert host["Memory"] == 1024 * 1024 * 1024
    assert host["PidsLimit"] == 128
    assert host["NanoCpus"] == 1_000_000_000
    assert container.attrs["Config"]["User"] == "10001"
    bindings = container.attrs["NetworkSettings"]["Ports"]["8000/tcp"]
    assert {binding["HostIp"] for binding in bindings} == {"127.0.0.1"}

    for word in ("hello", "world", "test"):
        await observe(docker_manager, session, word)
    headers = auth(session)
    base = f"/session/{session['session_id']}"
    learned = (await docker_manager.client.post(f"{base}/learn", headers=headers)).json()
    assert learned["pattern_name"] == "PTRN|386fbb12926e8e015a1483990df913e8410f94ce"
    await observe(docker_manager, session, "hello")
    await observe(docker_manager, session, "world")
    predictions = (await docker_manager.client.get(f"{base}/predictions", headers=headers)).json()
    assert [p["future"] for p in predictions["predictions"]] == [[["test"]]]


async def test_the_websocket_proxy_reaches_the_sessions_container(docker_manager: Manager) -> None:
    session = await docker_manager.create()
    url = f"{docker_manager.ws_url}/session/{session['session_id']}/ws?token={session['token']}"

    async def call(ws: Any, kind: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        await ws.send(json.dumps({"type": kind, "payload": payload or {}}))
        reply: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
        return reply

    async with connect(url, proxy=None, open_timeout=10) as ws:
        for word in ("over", "a", "socket"):
            observed = await call(ws, "observe", {"strings": [word], "vectors": [], "emotives": {}})
            assert observed["type"] == "observation_result"
        assert (await call(ws, "get_stm"))["data"]["stm"] == [["over"], ["a"], ["socket"]]
    stm = await docker_manager.client.get(
        f"/session/{session['session_id']}/stm", headers=auth(session)
    )
    assert stm.json()["stm"] == [["over"], ["a"], ["socket"]]


async def test_two_sessions_have_isolated_containers(
    docker_manager: Manager, docker_client: docker.DockerClient
) -> None:
    first, second = await docker_manager.create(), await docker_manager.create(user_id="bob")
    await observe(docker_manager, first, "only-in-first")
    stm = await docker_manager.client.get(
        f"/session/{second['session_id']}/stm", headers=auth(second)
    )
    assert stm.json()["stm"] == []
    (a,) = containers_of(docker_client, first["session_id"])
    (b,) = containers_of(docker_client, second["session_id"])
    assert a.id != b.id


async def test_delete_removes_the_container(
    docker_manager: Manager, docker_client: docker.DockerClient
) -> None:
    session = await docker_manager.create()
    assert containers_of(docker_client, session["session_id"])
    response = await docker_manager.client.delete(
        f"/session/{session['session_id']}", headers=auth(session)
    )
    assert response.status_code in (200, 204)
    assert containers_of(docker_client, session["session_id"]) == []
    gone = await docker_manager.client.get(
        f"/session/{session['session_id']}/stm", headers=auth(session)
    )
    assert gone.status_code == 410


async def test_failing_image_gives_a_clear_error_and_no_container(
    start_manager: StartManager,
    make_settings: SettingsFactory,
    failing_image: str,
    docker_client: docker.DockerClient,
    manager_id: str,
) -> None:
    manager = await start_manager(
        make_settings(backend="docker", docker_image=failing_image, start_timeout_s=20)
    )
    response = await manager.client.post(
        "/session/create", json={"user_id": "alice"}, headers=manager.creator
    )
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["code"] == "START_FAILED"
    assert "exited with code 3" in error["message"]
    assert any("processor exploded on purpose" in line for line in error["details"]["log_tail"])
    assert (
        docker_client.containers.list(all=True, filters={"label": f"{MANAGER_LABEL}={manager_id}"})
        == []
    )


async def test_a_restarted_manager_adopts_running_containers(
    start_manager: StartManager, make_settings: SettingsFactory, docker_client: docker.DockerClient
) -> None:
    settings = make_settings(backend="docker", docker_image=PROCESSOR_IMAGE)
    first = await start_manager(settings)
    session = await first.create()
    await observe(first, session, "before-restart")
    second = await start_manager(settings)
    stm = await second.client.get(f"/session/{session['session_id']}/stm", headers=auth(session))
    assert stm.json()["stm"] == [["before-restart"]]
    assert len(containers_of(docker_client, session["session_id"])) == 1


async def test_hibernated_session_comes_back_in_a_new_container(
    docker_manager: Manager, docker_client: docker.DockerClient
) -> None:
    session = await docker_manager.create()
    for word in ("a", "b"):
        await observe(docker_manager, session, word)
    await docker_manager.client.post(
        f"/session/{session['session_id']}/learn", headers=auth(session)
    )
    await observe(docker_manager, session, "kept")
    (old,) = containers_of(docker_client, session["session_id"])
    assert await docker_manager.app.state.sessions.hibernate(session["session_id"])
    assert containers_of(docker_client, session["session_id"]) == []
    stm = await docker_manager.client.get(
        f"/session/{session['session_id']}/stm", headers=auth(session)
    )
    assert stm.json()["stm"] == [["kept"]]
    (new,) = containers_of(docker_client, session["session_id"])
    assert new.id != old.id
    await observe(docker_manager, session, "a")
    await observe(docker_manager, session, "b")
    predictions = await docker_manager.client.get(
        f"/session/{session['session_id']}/predictions", headers=auth(session)
    )
    assert predictions.json()["predictions"], "learned pattern survived hibernation"
