"""The security suite runs real managers and processors with the integration suite's fixtures.

They are defined once, in ``tests/integration/session_manager/conftest.py`` (see its docstring:
``redis_url``, ``manager_id``, ``make_settings``, ``start_manager``, ``manager``,
``manager_process``, the autouse leak check); importing them here registers them for this
directory too.
"""

from __future__ import annotations

from tests.integration.session_manager.conftest import (
    fx_make_settings,
    fx_manager,
    fx_manager_id,
    fx_manager_process,
    fx_no_leaked_processors,
    fx_redis_server,
    fx_redis_url,
    fx_start_manager,
)

__all__ = (
    "fx_make_settings",
    "fx_manager",
    "fx_manager_id",
    "fx_manager_process",
    "fx_no_leaked_processors",
    "fx_redis_server",
    "fx_redis_url",
    "fx_start_manager",
)
