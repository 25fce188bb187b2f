"""The processor package's declared interface for the session manager.

The manager imports nothing else from ``processor_image``: this module names what the two
sides must agree on (where a knowledge base lives, which genes exist and what values they
take) without the manager loading the engine's or the storage's dependencies (no pymongo,
numpy or litestar; ``tests/unit/processor_image/test_contract.py`` checks that).
"""

from __future__ import annotations

from processor_image.engine.errors import GeneError, InvalidGeneValue, UnknownGene
from processor_image.engine.genes import GENE_ALIASES, GENE_RULES, GeneRule, validate_genes
from processor_image.storage.naming import database_name

__all__ = (
    "GENE_ALIASES",
    "GENE_RULES",
    "GeneError",
    "GeneRule",
    "InvalidGeneValue",
    "UnknownGene",
    "database_name",
    "validate_genes",
)
