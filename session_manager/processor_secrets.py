"""Each processor's secret: what proves a request comes from its manager (issue 13, finding 4).

The secret is HMAC-SHA256(key, processor id and the session's epoch), the key being
``PROCESSOR_SECRET_KEY`` or one generated once per deployment and kept in its Redis
(``store.processor_key``). Nothing secret is stored per session: any replica, after any
restart, derives the secret of the processor it talks to from the processor id and the epoch
of the route it holds. Every restart of a session's processor (restore, recovery) bumps the
epoch (``SessionRecord.epoch``), so a processor it replaced, were it still running (a node cut
off, then back), answers nothing the manager sends any more. Epoch 0 (records older than the
epoch, and a session's first processor) derives from the id alone, as before. The processor
gets it as ``PROCESSOR_SECRET`` at start and the manager sends it as ``SECRET_HEADER``; a
client cannot (the proxy drops client-sent ``X-Kato-*`` headers).
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ("SECRET_ENV", "SECRET_HEADER", "ProcessorSecrets")

SECRET_HEADER = "X-Kato-Processor-Secret"  # noqa: S105 - a header name
SECRET_ENV = "PROCESSOR_SECRET"  # noqa: S105 - a variable name

_DERIVED_MAX = 10_000


class ProcessorSecrets:
    """Derives processor secrets from one key; ``None`` where a manager has no key (tests)."""

    __slots__ = ("_derived", "_key")

    def __init__(self, key: str) -> None:
        self._key = key.encode()
        self._derived: dict[tuple[str, int], str] = {}
        """Secrets derived so far (the proxy sends one with every request; HMAC costs ~5 µs)."""

    @classmethod
    def from_key(cls, key: str) -> ProcessorSecrets | None:
        """The derivation for ``key``; ``None`` for an empty key (processors stay open)."""
        return cls(key) if key else None

    def for_processor(self, processor_id: str, epoch: int = 0) -> str:
        """The secret of the processor with this id at this epoch (hex, 64 characters)."""
        secret = self._derived.get((processor_id, epoch))
        if secret is None:
            if len(self._derived) >= _DERIVED_MAX:
                self._derived.clear()
            message = processor_id if not epoch else f"{processor_id}\n{epoch}"
            secret = hmac.new(self._key, message.encode(), hashlib.sha256).hexdigest()
            self._derived[(processor_id, epoch)] = secret
        return secret

    def headers(self, processor_id: str, epoch: int = 0) -> dict[str, str]:
        """The header that authenticates a request to this processor."""
        return {SECRET_HEADER: self.for_processor(processor_id, epoch)}
