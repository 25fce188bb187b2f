"""``python -m processor_image``: serve one KATO processor, configured by the environment."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import socket
import sys

import uvicorn

from processor_image.service.app import serving_app
from processor_image.service.config import ConfigError, ServiceConfig
from processor_image.unix_socket import listening_unix_socket

_STARTUP_FAILURE = 3
"""uvicorn's exit status when the server did not start (``uvicorn.run`` exits with it)."""


class _Server(uvicorn.Server):
    remove_on_shutdown = ""
    """The unix socket to remove: uvicorn re-raises a stopping signal once it has shut down,
    which ends the process before any code after ``run`` (a ``finally`` included)."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().shutdown(sockets)
        finally:
            if self.remove_on_shutdown:
                with contextlib.suppress(OSError):
                    os.unlink(self.remove_on_shutdown)


def main() -> int:
    """Run until stopped; a configuration problem exits with status 2 and says what is wrong."""
    try:
        config = ServiceConfig.from_env(os.environ)
    except ConfigError as exc:
        print(f"kato processor: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    fast = importlib.util.find_spec("uvloop") is not None
    server = _Server(
        uvicorn.Config(
            serving_app(config, os.environ),
            host=config.host,
            port=config.port,
            log_level=config.log_level,
            access_log=False,
            loop="uvloop" if fast else "asyncio",
            http="httptools" if importlib.util.find_spec("httptools") else "h11",
            lifespan="on",
        )
    )
    sockets = None
    if config.unix_socket:  # the TCP port as always, and the socket a manager on this host prefers
        sockets = [server.config.bind_socket()]
        try:
            sockets.append(listening_unix_socket(config.unix_socket, server.config.backlog))
        except OSError as exc:  # the manager falls back to the port
            logging.getLogger(__name__).warning("UNIX_SOCKET not served: %s", exc)
        else:
            server.remove_on_shutdown = config.unix_socket
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C stops it quietly, as ``uvicorn.run``
        server.run(sockets=sockets)
    if not server.started:
        return _STARTUP_FAILURE
    return 0


if __name__ == "__main__":
    sys.exit(main())
