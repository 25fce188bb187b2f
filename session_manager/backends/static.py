"""The ``static`` backend (gateway mode): processors run elsewhere and are only registered.

Processors come from ``PROCESSORS_FILE``/``KATO_PROCESSORS`` and are reached through the
gateway (``session_manager.gateway``); this backend never starts, stops or adopts anything, so
the reaper and reconciler leave them alone. Creating a session is refused with a clear 503.
"""

from __future__ import annotations

from session_manager.backends.base import ProcessorHandle, ProcessorSpec
from session_manager.errors import BackendUnavailable
from session_manager.settings import Settings

__all__ = ("StaticBackend",)


class StaticBackend:
    """A backend that owns no processors."""

    name = "static"

    @classmethod
    def from_settings(cls, settings: Settings) -> StaticBackend:
        """Nothing to configure: the processors are the gateway's."""
        del settings
        return cls()

    async def start(self, spec: ProcessorSpec) -> ProcessorHandle:
        """Refused: in gateway mode processors are registered, not started."""
        raise BackendUnavailable(
            "BACKEND=static does not start processors; use the registered ones at "
            "/session/{processor_id}/… or /processors/{processor_id}/…",
            session_id=spec.session_id,
        )

    async def stop(self, handle: ProcessorHandle) -> None:
        """Never stops a registered processor."""

    async def is_alive(self, handle: ProcessorHandle) -> bool:
        """Registered processors are someone else's to run; their health is the gateway's."""
        return True

    async def list_owned(self) -> list[ProcessorHandle]:
        """Owns nothing, so the reconciler never removes a registered processor."""
        return []

    async def exit_cause(self, handle: ProcessorHandle, processor_id: str) -> str | None:
        """Static processors are not ours to watch: never known."""
        return None

    async def ping(self) -> bool:
        """Always reachable: there is nothing to reach."""
        return True

    async def close(self) -> None:
        """Nothing to release."""
