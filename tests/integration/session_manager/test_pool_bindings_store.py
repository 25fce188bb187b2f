"""The warm pool's container bindings in Redis (docker, swarm): pool id -> session id."""

from __future__ import annotations

from session_manager.store import SessionStore


async def test_bindings_name_the_session_until_forgotten(store: SessionStore) -> None:
    bindings = store.pool_bindings
    assert await bindings.sessions_of([]) == {}
    await bindings.bind("pool-a", "s1")
    await bindings.bind("pool-b", "s2")
    assert await bindings.sessions_of(["pool-a", "pool-b", "pool-c"]) == {
        "pool-a": "s1",
        "pool-b": "s2",
    }
    await bindings.forget("pool-a")
    await bindings.forget("pool-a")  # twice: already gone is fine
    assert await bindings.sessions_of(["pool-a", "pool-b"]) == {"pool-b": "s2"}
    assert await store.redis.hgetall("t:pool-bindings") == {b"pool-b": b"s2"}
