"""``python -m session_manager``: read the settings, check the host, set up logging, run uvicorn.

Exit status: 0 after a normal shutdown, 1 when the host cannot run the manager (an unusable
``DATA_DIR``, a busy port: one line on stderr, nothing started), 2 for invalid settings, 3 when
the app itself failed to start (its parts are stopped again).
"""

from __future__ import annotations

import sys

import uvicorn

from session_manager.app import create_app
from session_manager.edge import EdgeLimits, edge_protocol, edge_websocket_protocol
from session_manager.log import configure_logging
from session_manager.settings import Settings, SettingsError
from session_manager.startup import StartupError, bind_listener, check_data_dir

_HOST_UNUSABLE = 1
_BAD_SETTINGS = 2
_STARTUP_FAILED = 3


def main() -> int:
    """Run the manager until interrupted; see the module docstring for the exit status."""
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        sys.stderr.write(f"kato-sessions: {exc}\n")
        return _BAD_SETTINGS
    try:
        check_data_dir(settings)
        listener = bind_listener(settings)
    except StartupError as exc:
        sys.stderr.write(f"kato-sessions: {exc}\n")
        return _HOST_UNUSABLE
    configure_logging(settings.log_level)
    if settings.admin_token_generated:
        sys.stdout.write(
            f"kato-sessions: ADMIN_TOKEN not set; generated admin token: {settings.admin_token}\n"
        )
        sys.stdout.flush()
    if settings.generated_api_key:
        sys.stdout.write(
            "kato-sessions: API_KEYS not set; generated API key (tenant default, scopes "
            f"sessions:create and admin): {settings.generated_api_key}\n"
        )
        sys.stdout.flush()
    limits = EdgeLimits(
        max_header_bytes=settings.max_header_bytes,
        max_headers=settings.max_headers,
        header_timeout_s=settings.header_timeout_s,
        write_timeout_s=settings.client_write_timeout_s,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings),
            host=settings.listen_host,
            port=settings.listen_port,
            log_level=settings.log_level.lower(),
            ws=edge_websocket_protocol(limits),
            http=edge_protocol(limits),
            timeout_keep_alive=settings.keepalive_timeout_s,
            lifespan="on",
            access_log=False,
            log_config=None,
        )
    )
    with listener:
        server.run(sockets=[listener])
    return 0 if server.started else _STARTUP_FAILED


if __name__ == "__main__":
    sys.exit(main())
