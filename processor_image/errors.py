"""The processor's one error root; every error it raises on purpose carries its status and code.

    ProcessorError (500 INTERNAL_ERROR)
    ├── EngineError (400 ENGINE_ERROR)                  engine/errors.py
    │   ├── ObservationError (422 INVALID_OBSERVATION)
    │   ├── GeneError (400 INVALID_GENE_VALUE)
    │   │   ├── InvalidGeneValue (400 INVALID_GENE_VALUE)
    │   │   └── UnknownGene (400 HTTP_400, spec §5.2)
    │   └── GeneNotFound (404 HTTP_404, spec §5.3)
    ├── StorageError (503 STORAGE_UNAVAILABLE)          storage/errors.py
    ├── PatternNotFound (404 HTTP_404, spec §6)         service/errors.py
    ├── ProcessorFenced (503 PROCESSOR_FENCED)          service/errors.py
    ├── SequenceFailed (status and code of its cause)   service/errors.py
    ├── FailedButApplied (status and code of its cause) service/errors.py
    ├── StateTooLarge (413 BODY_TOO_LARGE)              service/errors.py (PUT /state)
    ├── UnsupportedEncoding (415 UNSUPPORTED_ENCODING)  service/errors.py (PUT /state)
    └── StateNotReadable (422 INVALID_JSON or VALIDATION_ERROR)  service/errors.py

``service.errors`` turns every one of them into the error JSON; the engine and the stores only
raise. Codes are listed with the manager's in ``docs/errors.md``.
"""

from __future__ import annotations

from typing import Any

__all__ = ("ProcessorError",)


class ProcessorError(Exception):
    """Base of every error the processor package raises on purpose."""

    status: int = 500
    code: str = "INTERNAL_ERROR"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details
