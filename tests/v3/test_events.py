"""v3's ``/ws/events`` (spec §6): a snapshot on connect, creations and deletions pushed, ping."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import httpx
import pytest
import websockets

from tests.support.manager import Manager, SettingsFactory, StartManager

OFFSET = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$")
LOCAL = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?$")


async def _event(socket: Any) -> dict[str, Any]:
    message = json.loads(await asyncio.wait_for(socket.recv(), 10))
    assert isinstance(message, dict)
    return message


def _ws(manager: Manager) -> str:
    return manager.base_url.replace("http://", "ws://") + "/v3/ws/events"


async def test_events_follow_creates_and_deletes(
    v3_manager: Manager, v3: httpx.AsyncClient
) -> None:
    existing = (await v3.post("/sessions", json={"node_id": "events-a"})).json()["session_id"]
    async with websockets.connect(_ws(v3_manager)) as socket:
        snapshot = await _event(socket)
        assert snapshot["event_type"] == "state.snapshot"
        assert LOCAL.match(snapshot["timestamp"]), snapshot
        assert snapshot["data"] == {"active_sessions": 1, "system_status": "healthy"}

        await socket.send("ping")
        assert await asyncio.wait_for(socket.recv(), 10) == "pong"
        await socket.send("anything else is ignored")

        created = (await v3.post("/sessions", json={"node_id": "events-b"})).json()
        event = await _event(socket)
        assert event["event_type"] == "session.created"
        assert OFFSET.match(event["timestamp"]), event
        assert event["data"]["session_id"] == created["session_id"]
        assert event["data"]["node_id"] == "events-b"
        assert OFFSET.match(event["data"]["created_at"]), event

        assert (await v3.delete(f"/sessions/{existing}")).status_code == 200
        event = await _event(socket)
        assert event["event_type"] == "session.destroyed"
        assert event["data"]["session_id"] == existing
        assert event["data"]["reason"] == "explicit_delete"
        assert OFFSET.match(event["data"]["destroyed_at"]), event
    await v3.delete(f"/sessions/{created['session_id']}")


@pytest.fixture(name="keyed_manager")
async def fx_keyed_manager(start_manager: StartManager, make_settings: SettingsFactory) -> Manager:
    return await start_manager(make_settings(kato_v3_api="on", kato_v3_auth="key"))


async def test_with_keys_the_socket_needs_one(keyed_manager: Manager) -> None:
    async with websockets.connect(_ws(keyed_manager)) as socket:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401
