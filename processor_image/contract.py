"""The processor package's declared interface for the session manager.

The manager imports nothing else from ``processor_image``: this module names what the two
sides must agree on (where a knowledge base lives, which genes exist and what values they
take) without the manager loading the engine's or the storage's dependencies (no pymongo,
numpy or litestar; ``tests/unit/processor_image/test_contract.py`` checks that).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from processor_image.engine.errors import GeneError, InvalidGeneValue, UnknownGene
from processor_image.engine.genes import GENE_ALIASES, GENE_RULES, GeneRule, validate_genes
from processor_image.storage.naming import database_name

if TYPE_CHECKING:
    from typing import Any

__all__ = (
    "EXIT_OUT_OF_MEMORY",
    "GENE_ALIASES",
    "GENE_RULES",
    "OUT_OF_MEMORY_LINE",
    "GeneError",
    "GeneRule",
    "InvalidGeneValue",
    "UnknownGene",
    "database_name",
    "openapi_document",
    "validate_genes",
)

EXIT_OUT_OF_MEMORY = 86
"""A processor that ran out of memory (``MemoryError``: its memory limit was reached) exits
with this status at once: its state may be half-updated, and the manager recovers the session
from checkpoint and journal, telling the session's clients why (``PROCESSOR_OUT_OF_MEMORY``)."""

OUT_OF_MEMORY_LINE = "kato processor: out of memory (memory limit reached); exiting"
"""Its last line on stderr, for a manager that did not start it and cannot see its status."""


def openapi_document() -> dict[str, Any]:
    """The processor's OpenAPI document, for the manager to publish under ``/session/{id}``.

    Built from the service's own routes (no processor is started), so it cannot drift from
    them. Imports the service (litestar, the engine, the stores) only when called.
    """
    from processor_image.service.app import create_app
    from processor_image.service.config import ServiceConfig

    app = create_app(ServiceConfig(processor_id="schema"))
    document: dict[str, Any] = app.openapi_schema.to_schema()
    return document
