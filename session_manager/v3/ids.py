"""KATO v3's identifier and timestamp formats, and how a ``node_id`` names a knowledge base."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime

__all__ = ("iso_micro", "iso_offset", "new_session_id", "node_key", "unique_id")

_NODE_UNSAFE = re.compile(r'[/\\."$*<>:|?\- ]')
_NODE_KEY_MAX = 60


def new_session_id(now_ms: int) -> str:
    """``session-`` + 32 lowercase hex digits + ``-`` + creation time in epoch milliseconds."""
    return f"session-{secrets.token_hex(16)}-{now_ms}"


def unique_id(prefix: str) -> str:
    """``obs-…`` / ``seq-obs-…``: the prefix and 32 hex digits."""
    return f"{prefix}-{secrets.token_hex(16)}"


def iso_micro(epoch_us: int) -> str:
    """ISO-8601 UTC with ``Z`` and 6-digit microseconds; no fraction when it is exactly zero."""
    moment = datetime.fromtimestamp(epoch_us // 1_000_000, UTC).replace(
        microsecond=epoch_us % 1_000_000
    )
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}"
    return text + "Z"


def iso_offset(epoch_s: float) -> str:
    """ISO-8601 with a ``+00:00`` offset (v3's ``/health`` and monitoring bodies)."""
    return datetime.fromtimestamp(epoch_s, UTC).isoformat()


def node_key(node_id: str, service_name: str = "kato") -> str:
    """v3's storage key of a node: unsafe characters become ``_``, ``_<service>`` appended.

    Over 60 characters the id is cut and 8 hex digits of a hash added. So ``a-b`` and ``a_b``
    share a knowledge base, as in v3.
    """
    key = f"{_NODE_UNSAFE.sub('_', node_id)}_{service_name}"
    if len(key) > _NODE_KEY_MAX:
        digest = hashlib.md5(node_id.encode(), usedforsecurity=False).hexdigest()[:8]
        key = f"{key[: _NODE_KEY_MAX - 9]}_{digest}"
    return key
