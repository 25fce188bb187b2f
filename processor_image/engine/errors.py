"""Exceptions the engine raises: the ``EngineError`` branch of ``processor_image.errors``."""

from __future__ import annotations

from processor_image.errors import ProcessorError

__all__ = (
    "EngineError",
    "GeneError",
    "GeneNotFound",
    "InvalidGeneValue",
    "ObservationError",
    "UnknownGene",
)


class EngineError(ProcessorError):
    """Base of every error the engine raises on purpose (a bad start-up value, too)."""

    status, code = 400, "ENGINE_ERROR"


class ObservationError(EngineError):
    """An observation the engine cannot take (no unique_id, vectors numpy cannot add up)."""

    status, code = 422, "INVALID_OBSERVATION"


class GeneError(EngineError):
    """A gene the validator refused; nothing of the request it came in was applied."""

    status, code = 400, "INVALID_GENE_VALUE"

    def __init__(self, message: str, name: str) -> None:
        super().__init__(message)
        self.name = name


class UnknownGene(GeneError):
    """A name that is not a gene, or not one that may change at run time (spec §5.2: 400)."""

    code = "HTTP_400"

    def __init__(self, name: str) -> None:
        super().__init__(f"Unknown gene: {name}", name)  # the spec's exact message


class InvalidGeneValue(GeneError):
    """A gene value of the wrong type or out of range; rejected so it cannot break predictions."""

    def __init__(self, name: str, expected: str, value: object) -> None:
        super().__init__(f"Invalid value for gene {name}: expected {expected}, got {value!r}", name)


class GeneNotFound(EngineError):
    """``/gene/{name}`` asked for a name nothing holds (spec §5.3: 404)."""

    status, code = 404, "HTTP_404"

    def __init__(self, name: str) -> None:
        super().__init__(f"Gene {name} not found")
        self.name = name
