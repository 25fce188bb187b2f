"""Processor secrets per (processor id, epoch): epoch 0 keeps the secret processors had before."""

from __future__ import annotations

import hashlib
import hmac

from session_manager.processor_secrets import SECRET_HEADER, ProcessorSecrets


def test_epoch_zero_is_the_secret_of_the_id_alone() -> None:
    """Processors started before an upgrade (their records have no epoch) keep working."""
    secrets = ProcessorSecrets("key")
    before = hmac.new(b"key", b"session-1", hashlib.sha256).hexdigest()
    assert secrets.for_processor("session-1") == before
    assert secrets.for_processor("session-1", 0) == before


def test_every_epoch_has_its_own_secret() -> None:
    secrets = ProcessorSecrets("key")
    seen = {secrets.for_processor("session-1", epoch) for epoch in range(50)}
    assert len(seen) == 50
    assert secrets.for_processor("session-1", 1) != secrets.for_processor("session-11")
    assert secrets.headers("session-1", 2) == {SECRET_HEADER: secrets.for_processor("session-1", 2)}
    assert ProcessorSecrets("other").for_processor("session-1", 1) != secrets.for_processor(
        "session-1", 1
    )
