"""``translate_redis_errors``: unreachable Redis is ``StoreUnavailable``; bugs pass through."""

from __future__ import annotations

import pytest
import redis.exceptions

from session_manager.errors import StoreUnavailable
from session_manager.store.boundary import translate_redis_errors


@translate_redis_errors
async def _raises(exc: Exception) -> None:
    raise exc


@pytest.mark.parametrize(
    "exc",
    [redis.exceptions.ConnectionError("down"), redis.exceptions.TimeoutError("slow"), OSError()],
)
async def test_unreachable_redis_becomes_store_unavailable_as_decorator(exc: Exception) -> None:
    with pytest.raises(StoreUnavailable) as caught:
        await _raises(exc)
    assert caught.value.__cause__ is exc


def test_unreachable_redis_becomes_store_unavailable_as_context_manager() -> None:
    with pytest.raises(StoreUnavailable), translate_redis_errors:
        raise redis.exceptions.ConnectionError("down")


async def test_other_redis_errors_pass_through() -> None:
    with pytest.raises(redis.exceptions.ResponseError):
        await _raises(redis.exceptions.ResponseError("WRONGTYPE"))
