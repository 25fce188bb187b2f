"""A v3-style client trains and predicts: two node_ids, three sessions, sharing and isolation.

Sessions of one node_id share learned patterns (at once, without restarting anything); another
node sees none of them; every session's STM is its own. Run on both knowledge stores: memory
(the node's processors exchange their changes through the manager) and MongoDB (one database).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.mongo_server import mongo_server
from tests.support.manager import Manager, SettingsFactory, StartManager
from tests.v3.client import KATOClient, V3Error


@pytest.fixture(name="mongo_url", scope="module")
def fx_mongo_url() -> Iterator[str]:
    with mongo_server() as url:
        yield url


@pytest.fixture(name="v3_http", params=["memory", "mongodb"])
async def fx_v3_http(
    request: pytest.FixtureRequest,
    start_manager: StartManager,
    make_settings: SettingsFactory,
) -> AsyncIterator[tuple[httpx.AsyncClient, Manager]]:
    storage: str = request.param
    fields: dict[str, str] = {"kato_v3_api": "on", "kato_v3_auth": "none"}
    if storage == "mongodb":
        fields |= {
            "processor_storage": "mongodb",
            "mongo_url": request.getfixturevalue("mongo_url"),
        }
    manager = await start_manager(make_settings(**fields))
    async with httpx.AsyncClient(base_url=manager.base_url + "/v3", timeout=30) as http:
        yield http, manager


def _futures(predictions: list[dict[str, object]]) -> list[object]:
    return [p["future"] for p in predictions]


async def test_train_and_predict_with_two_nodes_and_three_sessions(
    v3_http: tuple[httpx.AsyncClient, Manager],
) -> None:
    http, manager = v3_http
    alice_1 = KATOClient(http, "alice")
    alice_2 = KATOClient(http, "alice")
    bob = KATOClient(http, "bob")
    for client in (alice_1, alice_2, bob):
        await client.connect()
    assert len({alice_1.session_id, alice_2.session_id, bob.session_id}) == 3

    # alice_2 has STM of its own before alice_1 trains: it is never touched by alice_1.
    await alice_2.observe(["zzz"])

    # alice_1 trains one sequence; bob trains another on his own node.
    for event in (["hello"], ["world"], ["again"]):
        await alice_1.observe(event)
    learned = await alice_1.learn()
    assert learned.startswith("PTRN|")
    for event in (["one"], ["two"], ["three"]):
        await bob.observe(event)
    assert (await bob.learn()).startswith("PTRN|")

    assert await alice_2.get_stm() == [["zzz"]]
    await alice_2.clear_stm()

    # alice_2 predicts from what alice_1 learned, at once.
    for event in (["hello"], ["world"]):
        await alice_2.observe(event)
    predictions = await alice_2.get_predictions()
    assert learned in [p["name"] for p in predictions]
    assert [["again"]] in _futures(predictions)
    # bob's node knows nothing of alice's pattern, and alice's nothing of bob's.
    for event in (["hello"], ["world"]):
        await bob.observe(event)
    assert learned not in [p["name"] for p in await bob.get_predictions()]
    await alice_1.observe(["one"])
    await alice_1.observe(["two"])
    assert [["three"]] not in _futures(await alice_1.get_predictions())

    # Knowledge outlives the sessions: a new session on alice's node still predicts it.
    await alice_1.close()
    await alice_2.close()
    alice_3 = KATOClient(http, "alice")
    await alice_3.connect()
    await alice_3.observe(["hello"])
    await alice_3.observe(["world"])
    assert [["again"]] in _futures(await alice_3.get_predictions())

    # clear-all in one session wipes the node for all of its sessions, not bob's.
    alice_4 = KATOClient(http, "alice")
    await alice_4.connect()
    await alice_3.clear_all()
    await alice_4.observe(["hello"])
    await alice_4.observe(["world"])
    assert await alice_4.get_predictions() == []
    await bob.clear_stm()
    await bob.observe(["one"])
    await bob.observe(["two"])
    assert [["three"]] in _futures(await bob.get_predictions())

    # Every v3 session is a real session: listed by the admin API with its node as user.
    listed = (
        await manager.client.get(
            "/admin/sessions", params={"label": "api:v3"}, headers=manager.admin
        )
    ).json()
    users = sorted(s["user_id"] for s in listed["sessions"])
    assert users == ["v3-node-alice_kato", "v3-node-alice_kato", "v3-node-bob_kato"]


async def test_a_deleted_session_is_recreated_by_the_client_on_a_get(
    v3_http: tuple[httpx.AsyncClient, Manager],
) -> None:
    http, _ = v3_http
    client = KATOClient(http, "carol")
    await client.connect()
    await client.observe(["a"])
    assert await client.get_stm() == [["a"]]
    first = client.session_id
    await http.delete(f"/sessions/{first}")
    # GET: the client recreates and replays; POST: the 404 reaches the caller.
    assert await client.get_stm() == [["a"]]
    assert client.recreated == 1
    assert client.session_id != first
    client.session_id = first
    with pytest.raises(V3Error) as refused:
        await client.observe(["b"])
    assert refused.value.status == 404
    assert refused.value.body["error"]["code"] == "SESSION_NOT_FOUND"
