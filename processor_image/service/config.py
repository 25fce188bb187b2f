"""The service's settings, read once from the environment (spec §5.1, ARCHITECTURE "Processor")."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import msgspec

from processor_image.engine import EngineError, Genes
from processor_image.engine.core import ENV_VAR as ENGINE_CORE_VAR
from processor_image.engine.core import CoreName, resolve
from processor_image.storage import DEFAULT_PREDICTIONS_HISTORY

__all__ = ("ConfigError", "ServiceConfig")

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_MAX_STATE_BYTES = 1024 * 1024 * 1024


class ConfigError(ValueError):
    """The environment does not describe a processor that can start."""


class ServiceConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the processor service is configured with."""

    processor_id: str
    processor_name: str = "KatoProcessor"
    kb_id: str = ""
    storage: Literal["memory", "mongodb"] = "memory"
    mongo_url: str | None = None
    genes: Genes = msgspec.field(default_factory=Genes)
    host: str = "0.0.0.0"
    port: int = 8000
    unix_socket: str = ""
    """``UNIX_SOCKET``: a path to serve on too (mode 0600), for a manager on the same host."""
    log_level: str = "info"
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Largest request body, for every route but ``PUT /state`` (client requests)."""
    max_state_bytes: int = DEFAULT_MAX_STATE_BYTES
    """Largest ``PUT /state`` snapshot, as sent and once decompressed (hibernation restores)."""
    secret: str = ""
    """``PROCESSOR_SECRET``: when set, required on every request but ``GET /health``."""
    allowed_hosts: tuple[str, ...] = ()
    """``ALLOWED_HOSTS`` (comma-separated), beyond loopback: names the manager reaches it by."""
    await_claim: bool = False
    """``AWAIT_CLAIM=1``: a warm-pool processor; serves no session until ``POST /claim``."""
    predictions_history: int = DEFAULT_PREDICTIONS_HISTORY
    """``PREDICTIONS_HISTORY``: stored prediction records the memory store keeps; 0: all."""
    predictions_ttl_s: int = 0
    """``PREDICTIONS_TTL_S``: MongoDB expires stored predictions this long after; 0: never."""
    knowledge_outbox: bool = False
    """``KNOWLEDGE_OUTBOX=1``: record knowledge changes for sharing (``engine.sharing``)."""
    engine_core: CoreName = "python"
    """``KATO_ENGINE_CORE`` (``auto``, ``python``, ``compiled``), resolved: the core in use."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ServiceConfig:
        """Read and check every variable; the first problem is a ConfigError naming it."""
        processor_id = environ.get("PROCESSOR_ID", "").strip()
        if not processor_id:
            raise ConfigError("PROCESSOR_ID is required: the id of this processor")
        storage = environ.get("STORAGE", "memory")
        if storage not in ("memory", "mongodb"):
            raise ConfigError(f"STORAGE={storage!r}: expected 'memory' or 'mongodb'")
        mongo_url = environ.get("MONGO_URL") or None
        if storage == "mongodb" and mongo_url is None:
            raise ConfigError("STORAGE=mongodb needs MONGO_URL")
        try:
            genes = Genes.from_env(environ)
            engine_core = resolve(environ.get(ENGINE_CORE_VAR) or "auto", environ)
        except EngineError as exc:
            raise ConfigError(exc.message) from exc
        return cls(
            processor_id=processor_id,
            processor_name=environ.get("PROCESSOR_NAME", "KatoProcessor"),
            kb_id=environ.get("KB_ID") or processor_id,
            storage=storage,  # type: ignore[arg-type]
            mongo_url=mongo_url,
            genes=genes,
            host=environ.get("HOST", "0.0.0.0"),
            port=_int(environ, "PORT", 8000),
            unix_socket=environ.get("UNIX_SOCKET", ""),
            log_level=environ.get("LOG_LEVEL", "info").lower(),
            max_body_bytes=_int(environ, "MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
            max_state_bytes=_int(environ, "MAX_STATE_BYTES", DEFAULT_MAX_STATE_BYTES),
            secret=environ.get("PROCESSOR_SECRET", ""),
            allowed_hosts=tuple(
                h.strip() for h in environ.get("ALLOWED_HOSTS", "").split(",") if h.strip()
            ),
            await_claim=environ.get("AWAIT_CLAIM", "") in ("1", "true"),
            predictions_history=_int(environ, "PREDICTIONS_HISTORY", DEFAULT_PREDICTIONS_HISTORY),
            predictions_ttl_s=_int(environ, "PREDICTIONS_TTL_S", 0),
            knowledge_outbox=environ.get("KNOWLEDGE_OUTBOX", "") in ("1", "true"),
            engine_core=engine_core,
        )


def _int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < 0:
        raise ConfigError(f"{name}={raw!r} must not be negative")
    return value
