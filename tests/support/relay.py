"""A loopback TCP relay that can hold traffic: a real slow database, not a mock.

``HeldRelay(host, port)`` listens on a free loopback port and copies bytes both ways to
``host:port``. ``hold()`` makes it keep what arrives (in either direction) until ``release()``,
so a client of the server behind it waits as it would on a stalled database.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

__all__ = ("HeldRelay",)

_CHUNK = 65536


class HeldRelay:
    """Relay ``127.0.0.1:<port>`` to ``target``; traffic flows only while not held."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._open = threading.Event()
        self._open.set()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def hold(self) -> None:
        """From now on, keep every byte until ``release``."""
        self._open.clear()

    def release(self) -> None:
        """Let the held bytes, and all later ones, through."""
        self._open.set()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._target)
            with self._lock:
                self._sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                pump = threading.Thread(target=self._pump, args=(source, sink), daemon=True)
                pump.start()
                self._threads.append(pump)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(_CHUNK):
                while not self._open.wait(0.05):
                    if self._closed.is_set():
                        return
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        """Stop relaying and close every connection."""
        self._closed.set()
        self._open.set()
        with self._lock:  # shutdown wakes the threads blocked in accept or recv
            for sock in (self._listener, *self._sockets):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> HeldRelay:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
