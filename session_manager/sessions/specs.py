"""What a backend is asked to start for a session: its ``ProcessorSpec``, from settings + record."""

from __future__ import annotations

from typing import Any

from session_manager.backends.base import ProcessorSpec
from session_manager.models import SessionRecord
from session_manager.processor_secrets import SECRET_ENV, ProcessorSecrets
from session_manager.settings import Settings

__all__ = ("SHARED_KNOWLEDGE", "processor_spec")

SHARED_KNOWLEDGE = ("knowledge", "shared")
"""The label of a session whose memory-store knowledge the manager shares (the v3 API's): its
processor records its knowledge changes (``KNOWLEDGE_OUTBOX``)."""


def processor_spec(settings: Settings, record: SessionRecord) -> ProcessorSpec:
    """The processor's environment: identity, storage, limits, genes, and its secret."""
    env = {
        "PROCESSOR_ID": record.processor_id,
        "PROCESSOR_NAME": f"session-{record.session_id}",
        "KB_ID": record.kb_id,
        "STORAGE": settings.processor_storage,
        # Client requests: what the proxy allows. Snapshots coming back through PUT /state
        # have their own, larger limit (a client cannot send one past the proxy's cap).
        "MAX_BODY_BYTES": str(settings.max_proxy_body_bytes),
        "MAX_STATE_BYTES": str(settings.max_state_bytes),
        "PREDICTIONS_HISTORY": str(settings.processor_predictions_history),
        "PREDICTIONS_TTL_S": str(settings.processor_predictions_ttl_s),
    }
    if settings.mongo_url:
        env["MONGO_URL"] = settings.mongo_url
    key, value = SHARED_KNOWLEDGE
    if settings.processor_storage == "memory" and record.labels.get(key) == value:
        env["KNOWLEDGE_OUTBOX"] = "1"
    env.update({name.upper(): _env_value(value) for name, value in record.genes.items()})
    secrets = ProcessorSecrets.from_key(settings.processor_secret_key)
    if secrets is not None:  # the processor then answers only requests carrying it
        env[SECRET_ENV] = secrets.for_processor(record.processor_id, record.epoch)
    return ProcessorSpec(
        session_id=record.session_id,
        processor_id=record.processor_id,
        kb_id=record.kb_id,
        env=env,
    )


def _env_value(value: Any) -> str:
    """Genes as the processor reads them from its environment (booleans as ``true``/``false``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
