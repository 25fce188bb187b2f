"""The one place Redis failures become ours: "Redis cannot be reached" is ``StoreUnavailable``.

Like httpx's ``map_httpcore_exceptions``, one object sits at the boundary where the Redis
client is called, as a decorator on store methods and as a ``with`` block inside generators::

    @translate_redis_errors
    async def get(...): ...

    with translate_redis_errors:
        message = await pubsub.get_message(timeout=1.0)

Connection errors, timeouts and a server still loading its data become ``StoreUnavailable``
(503 ``STORE_UNAVAILABLE``); any other Redis error is a bug and passes through unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import ParamSpec, TypeVar

import redis.exceptions

from session_manager.errors import StoreUnavailable

__all__ = ("REDIS_DOWN", "translate_redis_errors")

P = ParamSpec("P")
T = TypeVar("T")

REDIS_DOWN: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    TimeoutError,
    OSError,
)
"""The failures that mean Redis cannot answer now (as opposed to a wrong command)."""


class _RedisErrorBoundary:
    """A context manager that is also a decorator for coroutine functions."""

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(exc, REDIS_DOWN):
            raise StoreUnavailable(
                "the session store (Redis) cannot be reached", error=str(exc)
            ) from exc

    def __call__(self, method: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        @functools.wraps(method)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            with self:
                return await method(*args, **kwargs)

        return wrapper


translate_redis_errors = _RedisErrorBoundary()
"""``@translate_redis_errors`` on a coroutine function, or ``with translate_redis_errors:``."""
