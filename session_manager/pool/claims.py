"""The manager's side of a claim: ``POST /claim`` to a pooled processor, errors sorted out.

See ``processor_image/service/claim.py`` for the processor's side. The claim carries the
environment a cold start would have had (the session's ``ProcessorSpec.env``), authenticated
with the pooled processor's own secret (derived from its pool id).
"""

from __future__ import annotations

import enum

from session_manager.errors import ProcessorTimeout, ProcessorUnavailable
from session_manager.processor_client import ProcessorClient
from session_manager.processor_secrets import ProcessorSecrets

__all__ = ("ClaimClient", "ClaimError", "Refusal")


class Refusal(enum.StrEnum):
    """Why a pooled processor could not be claimed; says what to do with it."""

    GONE = "gone"
    """Unreachable: it died in the pool. Remove it and take the next one."""
    TAKEN = "taken"
    """It answered that it is claimed already (by someone else): leave it alone."""
    REFUSED = "refused"
    """It refused this claim (bad environment, knowledge base down): remove it; a cold start
    will say why with the processor's log."""


class ClaimError(Exception):
    """A claim that did not happen."""

    def __init__(self, refusal: Refusal, message: str) -> None:
        super().__init__(message)
        self.refusal = refusal


class ClaimClient:
    """Claims and the pool's health probes, through the manager's ``ProcessorClient``."""

    def __init__(self, secrets: ProcessorSecrets | None, *, timeout_s: float) -> None:
        self._secrets = secrets
        self._client = ProcessorClient(read_timeout_s=timeout_s, connect_timeout_s=1.0)

    def _headers(self, pool_id: str) -> dict[str, str]:
        return self._secrets.headers(pool_id) if self._secrets is not None else {}

    async def claim(self, endpoint: str, pool_id: str, env: dict[str, str]) -> None:
        """Make the pooled processor ``pool_id`` the processor ``env`` describes."""
        try:
            reply = await self._client.exchange(
                "POST", endpoint, "/claim", json={"env": env}, headers=self._headers(pool_id)
            )
        except (ProcessorUnavailable, ProcessorTimeout) as exc:
            raise ClaimError(Refusal.GONE, exc.message) from exc
        if reply.status == 200:
            return
        refusal = Refusal.TAKEN if reply.status in (401, 409) else Refusal.REFUSED
        excerpt = reply.content[:500].decode("utf-8", "replace")
        raise ClaimError(refusal, f"{endpoint}: {reply.status} {excerpt}")

    async def is_waiting(self, endpoint: str, pool_id: str) -> bool:
        """Whether ``/health`` answers naming ``pool_id`` (alive, still unclaimed)."""
        return await self._client.is_ready(endpoint, pool_id)

    async def aclose(self) -> None:
        """Close the connections."""
        await self._client.aclose()
