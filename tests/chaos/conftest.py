"""The session manager's fixtures (real Redis, real processors, leak check), shared here."""

from tests.integration.session_manager.conftest import (
    fx_make_settings,
    fx_manager_id,
    fx_manager_process,
    fx_no_leaked_processors,
    fx_redis_server,
    fx_redis_url,
    fx_start_manager,
)

__all__ = (
    "fx_make_settings",
    "fx_manager_id",
    "fx_manager_process",
    "fx_no_leaked_processors",
    "fx_redis_server",
    "fx_redis_url",
    "fx_start_manager",
)
