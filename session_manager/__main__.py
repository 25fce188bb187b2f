"""``python -m session_manager``: read the settings, set up logging, run uvicorn."""

from __future__ import annotations

import sys

import uvicorn

from session_manager.app import create_app
from session_manager.log import configure_logging
from session_manager.settings import Settings, SettingsError


def main() -> int:
    """Run the manager until interrupted; settings errors exit with status 2."""
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        sys.stderr.write(f"kato-sessions: {exc}\n")
        return 2
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
    uvicorn.run(
        create_app(settings),
        host=settings.listen_host,
        port=settings.listen_port,
        log_level=settings.log_level.lower(),
        ws="websockets-sansio",
        lifespan="on",
        access_log=False,
        log_config=None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
