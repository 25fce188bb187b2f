"""The client's WebSocket helper (``SessionSocket``) through a real manager's proxy."""

from __future__ import annotations

import pytest
from kato_sessions import (
    AsyncClient,
    SessionExpired,
    Unauthorized,
    WebSocketMessageError,
)

from tests.support.manager import ADMIN_TOKEN, API_KEY, Manager


def _client(manager: Manager) -> AsyncClient:
    return AsyncClient(manager.base_url, api_key=API_KEY, admin_token=ADMIN_TOKEN)


async def test_every_message_type_and_a_pipelined_stream_of_results(manager: Manager) -> None:
    async with _client(manager) as client, await client.create("alice") as session:
        async with session.websocket() as ws:
            assert (await ws.observe(["a"])).time == 1
            assert (await ws.observe(["b"], emotives={"joy": 0.5}, unique_id="u-b")).unique_id == (
                "u-b"
            )
            assert (await ws.stm()).stm == [["a"], ["b"]]
            name = await ws.learn()
            assert name.startswith("PTRN|")
            await ws.observe(["a"])
            await ws.observe(["b"])
            predictions = await ws.predictions()
            assert predictions.predictions[0]["name"] == name
            assert (await ws.predictions(unique_id="u-b")).predictions == []
            await ws.update_genes({"max_predictions": 3})
            assert await ws.ping() > 0
            await ws.clear_stm()
            assert (await ws.stm()).stm == []

            # a message the processor cannot use: an error reply, and the socket stays open
            with pytest.raises(WebSocketMessageError) as refused:
                await ws.update_genes({"no_such_gene": 1})
            assert "no_such_gene" in refused.value.message
            unknown = await ws.request("no_such_type")
            assert unknown.type == "error"

            # many observations pipelined: one result each, in order
            results = [r async for r in ws.observe_stream(([f"w{i}"] for i in range(60)), window=8)]
            assert [r.time for r in results] == list(range(5, 65))
            raw = [r async for r in ws.stream([("ping", None), ("get_stm", {})])]
            assert [r.type for r in raw] == ["pong", "stm"]
            assert raw[1].data["stm"][-1] == ["w59"]

            # the socket as an async iterator of replies
            await ws.send("ping")
            await ws.send("get_stm")
            replies = []
            async for reply in ws:
                replies.append(reply.type)
                if len(replies) == 2:
                    break
            assert replies == ["pong", "stm"]

            await ws.clear_all()
        assert (await session.stm()).stm == []


async def test_a_refused_socket_raises_the_error_of_its_close_code(manager: Manager) -> None:
    async with _client(manager) as client:
        session = await client.create("alice")
        async with client.session(session.session_id, "wrong-token").websocket() as ws:
            with pytest.raises(Unauthorized) as wrong:
                await ws.ping()
        assert wrong.value.status == 401
        assert wrong.value.details["close_code"] == 4401

        await session.delete()
        async with session.websocket() as ws:
            with pytest.raises(SessionExpired) as ended:
                await ws.ping()
        assert ended.value.code == "SESSION_EXPIRED"


async def test_the_socket_follows_its_session_through_a_hibernation(manager: Manager) -> None:
    """Hibernation closes the socket with 1012; the helper reconnects (the restore is waited
    for) and resends the unanswered message, so the caller sees no break."""
    async with _client(manager) as client, await client.create("alice") as session:
        async with session.websocket() as ws:
            await ws.observe(["a"])
            assert await manager.app.state.sessions.hibernate(session.session_id)
            assert (await client.inspect(session.session_id)).status == "hibernated"

            assert (await ws.observe(["b"])).time == 2
            assert (await ws.stm()).stm == [["a"], ["b"]]
        assert (await session.info()).status == "ready"
