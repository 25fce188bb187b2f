"""Exceptions the engine raises; the service maps each one to an HTTP status in one place."""

from __future__ import annotations

__all__ = ("EngineError", "GeneNotFound", "InvalidGeneValue", "ObservationError", "UnknownGene")


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ObservationError(EngineError):
    """An observation the engine cannot take (no unique_id, vectors numpy cannot add up)."""


class UnknownGene(EngineError):
    """``/genes/update`` named a gene that cannot be changed (spec §5.2: 400)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Unknown gene: {name}")
        self.name = name


class InvalidGeneValue(EngineError):
    """A gene update whose value has the wrong type; rejected so it cannot break predictions."""

    def __init__(self, name: str, expected: str) -> None:
        super().__init__(f"Invalid value for gene {name}: expected {expected}")
        self.name = name


class GeneNotFound(EngineError):
    """``/gene/{name}`` asked for a name nothing holds (spec §5.3: 404)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Gene {name} not found")
        self.name = name
