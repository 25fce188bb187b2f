"""The KATO engine: pure Python, no web framework and no database driver (spec §1-§6).

It reaches storage only through the ``KnowledgeBase`` protocol in ``knowledge``.
"""

from processor_image.engine.errors import (
    EngineError,
    GeneError,
    GeneNotFound,
    InvalidGeneValue,
    ObservationError,
    UnknownGene,
)
from processor_image.engine.genes import GENE_RULES, Genes, validate_genes
from processor_image.engine.knowledge import KnowledgeBase, KnowledgeDump
from processor_image.engine.predictions import Prediction
from processor_image.engine.processor import ObserveResult, Processor
from processor_image.engine.state import ProcessorState

__all__ = (
    "GENE_RULES",
    "EngineError",
    "GeneError",
    "GeneNotFound",
    "Genes",
    "InvalidGeneValue",
    "KnowledgeBase",
    "KnowledgeDump",
    "ObservationError",
    "ObserveResult",
    "Prediction",
    "Processor",
    "ProcessorState",
    "UnknownGene",
    "validate_genes",
)
