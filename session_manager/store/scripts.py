"""Lua scripts from ``lua/``: read once through ``importlib.resources``, registered per client.

Registering hashes the source once; each call then runs ``EVALSHA`` (loading the script again
only if the server lost it, e.g. after a restart).
"""

from __future__ import annotations

import importlib.resources

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

__all__ = ("register_script",)


def register_script(client: aioredis.Redis, name: str) -> AsyncScript:
    """The script ``lua/<name>`` registered on ``client``."""
    source = importlib.resources.files(__package__).joinpath("lua", name).read_text()
    return client.register_script(source)
