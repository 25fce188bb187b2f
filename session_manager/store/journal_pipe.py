"""A dedicated Redis connection for journal appends: the one Redis call on the proxy's hot path.

Every acknowledged write waits for its append (overlapped with the processor's work when the
entry is written ahead), so the append's cost adds to every write (the journal's target:
≤ 0.1 ms p50). Through redis-py it cost about 0.35 ms of the manager's
CPU per request (client, pool, command packing, script object, retry wrapper). This connection
does only what an append needs: ``EVALSHA`` of ``journal_append.lua``, framed here as RESP
bytes around a pre-encoded prefix, written straight to the socket (the embedded Redis's unix
socket, else the ``REDIS_URL`` host), its reply parsed by hiredis in ``data_received``. It
also writes entries ahead of the processor's answer (``ahead``: ``journal_ahead.lua``, written
at once and awaited later, see ``proxy.journaling``) and removes them (``void``).

Group commit: appends from concurrent requests are pipelined on the one connection, each
written as it comes; Redis answers in order, and each waiter gets its own reply. Nothing is
acknowledged early: a request's append is complete (Redis applied it and answered) before its
caller returns, as through redis-py.

Failures are ``StoreUnavailable`` (503): a timeout (``REDIS_TIMEOUT_S``) or a lost connection.
A lost connection is retried once on a fresh one (riding out an embedded Redis restart); that
is safe because an append is idempotent (``ZADD`` of the same member with the same score). A
server that lost the script (restart, ``SCRIPT FLUSH``) gets it again with ``EVAL``. TLS
(``rediss://``) and credential providers are not spoken here: ``for_client`` returns ``None``
and appends stay on redis-py.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection, UnixDomainSocketConnection

from session_manager.errors import StoreUnavailable

__all__ = ("JournalPipe", "resp_command")


def resp_command(*args: bytes) -> bytes:
    """One command as RESP (an array of bulk strings)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(parts)


def _sha(script: bytes) -> bytes:
    return hashlib.sha1(script, usedforsecurity=False).hexdigest().encode()


def _evalsha_prefix(sha: bytes, args: int) -> bytes:
    """``EVALSHA sha 2`` framed as RESP, for a command of ``args`` more parts (keys first)."""
    return b"*%d\r\n" % (args + 3) + resp_command(b"EVALSHA", sha, b"2")[len(b"*3\r\n") :]


def _framed(prefix: bytes, args: Sequence[bytes]) -> bytes:
    return prefix + b"".join([b"$%d\r\n%s\r\n" % (len(a), a) for a in args])


class _Reply(Exception):
    """An error reply from Redis (hiredis hands it over as an instance, not raised)."""


class _RespProtocol(asyncio.Protocol):
    """Writes commands as given; hands each reply, in order, to the future that waits for it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._parser = hiredis.Reader(replyError=_Reply)
        self._waiting: deque[tuple[float, asyncio.Future[Any]]] = deque()
        self.closed = False
        self._stalled = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the socket."""
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        """Parse replies as they come; each goes to the oldest waiter."""
        self._parser.feed(data)
        while (reply := self._parser.gets()) is not False:
            waiter = self._waiting.popleft()[1] if self._waiting else None
            if waiter is not None and not waiter.done():  # a cancelled waiter's reply is dropped
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        """Every waiter fails: its command may or may not have been applied."""
        self.closed = True
        while self._waiting:
            waiter = self._waiting.popleft()[1]
            if waiter.done():
                continue
            if self._stalled:
                waiter.set_exception(TimeoutError("Redis did not answer in time"))
            else:
                waiter.set_exception(ConnectionError("Redis closed the connection"))

    def call(self, command: bytes) -> asyncio.Future[Any]:
        """Write one command; the future gets its reply (an ``_Reply`` for an error)."""
        if self.closed or self.transport is None:
            raise ConnectionError("Redis connection closed")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Any] = loop.create_future()
        self._waiting.append((loop.time(), waiter))
        self.transport.write(command)
        return waiter

    def close_if_stalled(self, now: float, timeout_s: float) -> bool:
        """Close the socket if its oldest command waited over ``timeout_s``; whether it did."""
        if self._waiting and now - self._waiting[0][0] > timeout_s:
            self._stalled = True  # its waiters get TimeoutError, not a retry
            self.close()
            return True
        return False

    def close(self) -> None:
        """Close the socket (idempotent); waiters fail in ``connection_lost``."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()


Opener = Callable[[], Awaitable[_RespProtocol]]


def _unavailable(error: str) -> StoreUnavailable:
    return StoreUnavailable("the session store (Redis) cannot be reached", error=error)


class JournalPipe:
    """Runs ``journal_append.lua`` on one pipelined connection of its own.

    Args:
        open_connection: opens a socket to Redis (``for_client`` builds it from the app's
            client: same server, same credentials and database).
        script: the Lua source of ``journal_append.lua``.
        timeout_s: for a reply (``REDIS_TIMEOUT_S``), and to connect.
        setup: commands sent first on every new connection (``AUTH``, ``SELECT``).
    """

    def __init__(
        self,
        open_connection: Opener,
        script: str,
        *,
        timeout_s: float,
        setup: Sequence[bytes] = (),
        ahead_script: str = "",
    ) -> None:
        self._open = open_connection
        self._script = script.encode()
        self._sha = _sha(self._script)
        # Pre-framed: two keys, seq, entry, epoch (and, for an append, the entry it replaces).
        self._appending = {n: _evalsha_prefix(self._sha, n) for n in (5, 6)}
        self._ahead = ahead_script.encode()
        self._writing_ahead = _evalsha_prefix(_sha(self._ahead), 5)
        self._timeout_s = timeout_s
        self._setup = tuple(setup)
        self._conn: _RespProtocol | None = None
        self._connecting: asyncio.Task[_RespProtocol] | None = None

    @classmethod
    def for_client(
        cls, client: aioredis.Redis, script: str, timeout_s: float, *, ahead_script: str = ""
    ) -> JournalPipe | None:
        """A pipe to the server ``client`` talks to; ``None`` for TLS or credential providers."""
        pool = client.connection_pool
        kwargs = pool.connection_kwargs
        if kwargs.get("credential_provider") is not None:
            return None
        setup = []
        password, username = kwargs.get("password"), kwargs.get("username")
        if password:
            auth = (username, password) if username else (password,)
            setup.append(resp_command(b"AUTH", *(str(a).encode() for a in auth)))
        if int(kwargs.get("db") or 0):
            setup.append(resp_command(b"SELECT", str(kwargs["db"]).encode()))
        loop_open: Opener
        if pool.connection_class is UnixDomainSocketConnection:
            path = str(kwargs["path"])

            async def loop_open() -> _RespProtocol:
                loop = asyncio.get_running_loop()
                _, conn = await loop.create_unix_connection(_RespProtocol, path)
                return conn

        elif pool.connection_class is Connection:
            host, port = str(kwargs.get("host", "localhost")), int(kwargs.get("port", 6379))

            async def loop_open() -> _RespProtocol:
                loop = asyncio.get_running_loop()
                _, conn = await loop.create_connection(_RespProtocol, host, port)
                return conn

        else:  # TLS, or a connection class of someone's own
            return None
        return cls(loop_open, script, timeout_s=timeout_s, setup=setup, ahead_script=ahead_script)

    async def append(
        self,
        keys: tuple[bytes, bytes],
        seq: int,
        entry: bytes,
        replacing: bytes = b"",
        epoch: bytes = b"",
    ) -> int:
        """Run the append; its reply (the journal's length, 0 when the session ended).

        ``replacing``: this request's entry written ahead (``ahead``) under another seq;
        ``epoch``: the route's, checked against the session's (-2: it moved on).
        """
        args = (*keys, b"%d" % seq, entry, epoch, *((replacing,) if replacing else ()))
        command = _framed(self._appending[len(args)], args)
        try:
            reply = await self._call(command)
        except OSError:  # lost before the reply: once more, on a fresh connection
            try:
                reply = await self._call(command)
            except OSError as exc:
                raise _unavailable(str(exc)) from exc
        if isinstance(reply, _Reply) and str(reply).startswith("NOSCRIPT"):
            reply = await self._call(resp_command(b"EVAL", self._script, b"2", *args))
        if isinstance(reply, _Reply):
            raise StoreUnavailable("the journal append failed", error=str(reply))
        return int(reply)

    def ahead(
        self, keys: tuple[bytes, bytes], seq: int, entry: bytes, epoch: bytes = b""
    ) -> asyncio.Future[Any] | None:
        """Write ``journal_ahead.lua``'s call now, without waiting; the future gets its reply.

        ``None`` when it cannot be written at once (no connection open yet, or no script):
        the caller journals the slow way. The reply is the script's (length, 0, -1 or -2), an
        error reply (``NOSCRIPT`` included) as an exception instance, or the future fails
        with ``OSError``/``TimeoutError`` when the connection is lost.
        """
        conn = self._conn
        if not self._ahead or conn is None or conn.closed:
            return None
        return conn.call(_framed(self._writing_ahead, (*keys, b"%d" % seq, entry, epoch)))

    async def void(self, journal_key: bytes, entry: bytes) -> None:
        """Remove one entry (``ZREM``, idempotent: retried once on a fresh connection)."""
        command = resp_command(b"ZREM", journal_key, entry)
        try:
            reply = await self._call(command)
        except OSError:
            try:
                reply = await self._call(command)
            except OSError as exc:
                raise _unavailable(str(exc)) from exc
        if isinstance(reply, _Reply):
            raise StoreUnavailable("the journal void failed", error=str(reply))

    async def _call(self, command: bytes) -> Any:
        """One command's reply; ``StoreUnavailable`` on timeout (the connection is dropped).

        No timer per call: ``_watch`` checks the connection's oldest waiter a few times per
        timeout (an ``asyncio.timeout`` per append cost as much as the rest of it).
        """
        try:
            conn = await self._connection()
            return await conn.call(command)
        except TimeoutError:
            raise _unavailable("journal append timed out") from None

    async def _connection(self) -> _RespProtocol:
        conn = self._conn
        if conn is not None and not conn.closed:
            return conn
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.create_task(self._connect())
        return await asyncio.shield(self._connecting)

    async def _connect(self) -> _RespProtocol:
        async with asyncio.timeout(self._timeout_s):
            conn = await self._open()
        self._watch(conn)
        try:
            for command in self._setup:
                reply = await conn.call(command)
                if isinstance(reply, _Reply):
                    raise StoreUnavailable("Redis refused the journal connection", error=str(reply))
            if self._ahead:  # so that ``ahead`` finds it (a restarted server lost it)
                reply = await conn.call(resp_command(b"SCRIPT", b"LOAD", self._ahead))
                if isinstance(reply, _Reply):
                    raise StoreUnavailable("Redis refused the journal script", error=str(reply))
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _watch(self, conn: _RespProtocol) -> None:
        """Close ``conn`` once a reply is overdue (checked every quarter of the timeout)."""
        loop = asyncio.get_running_loop()
        every_s = self._timeout_s / 4

        def check() -> None:
            if not conn.closed and not conn.close_if_stalled(loop.time(), self._timeout_s):
                loop.call_later(every_s, check)

        loop.call_later(every_s, check)

    async def aclose(self) -> None:
        """Close the connection (appends in flight fail)."""
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
            with contextlib.suppress(BaseException):
                await self._connecting
        if self._conn is not None:
            self._conn.close()
            self._conn = None
