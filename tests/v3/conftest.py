"""v3 API fixtures: a manager with ``KATO_V3_API=on`` (real Redis, real processors).

* ``v3``: an ``httpx.AsyncClient`` on the manager's v3 prefix (``/v3``), no credential;
  ``v3_manager`` the ``Manager`` behind it (admin client, app).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.integration.session_manager.conftest import (
    fx_make_settings,
    fx_manager,
    fx_manager_id,
    fx_no_leaked_processors,
    fx_redis_server,
    fx_redis_url,
    fx_start_manager,
)
from tests.support.manager import Manager, SettingsFactory, StartManager

__all__ = (
    "fx_make_settings",
    "fx_manager",
    "fx_manager_id",
    "fx_no_leaked_processors",
    "fx_redis_server",
    "fx_redis_url",
    "fx_start_manager",
)


@pytest.fixture(name="v3_manager")
async def fx_v3_manager(start_manager: StartManager, make_settings: SettingsFactory) -> Manager:
    return await start_manager(make_settings(kato_v3_api="on", kato_v3_auth="none"))


@pytest.fixture(name="v3")
async def fx_v3(v3_manager: Manager) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=v3_manager.base_url + "/v3", timeout=30) as client:
        yield client
