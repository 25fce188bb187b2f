"""Genes: start values from the environment, updates and lookups (spec §5)."""

import pytest

from processor_image.engine import (
    EngineError,
    GeneNotFound,
    Genes,
    InvalidGeneValue,
    Processor,
    UnknownGene,
)


def test_genes_read_from_the_environment() -> None:
    genes = Genes.from_env(
        {"MAX_PATTERN_LENGTH": "3", "RECALL_THRESHOLD": "0.25", "SORT": "false", "PERSISTENCE": ""}
    )
    assert (genes.max_pattern_length, genes.recall_threshold, genes.sort, genes.persistence) == (
        3,
        0.25,
        False,
        5,
    )


def test_bad_environment_values_are_reported() -> None:
    with pytest.raises(EngineError, match="RECALL_THRESHOLD"):
        Genes.from_env({"RECALL_THRESHOLD": "high"})


def test_updates_apply_in_order_and_stop_at_the_first_unknown(processor: Processor) -> None:
    with pytest.raises(UnknownGene, match="Unknown gene: quiescence"):
        processor.update_genes({"recall_threshold": 0.3, "quiescence": 4, "max_predictions": 7})
    assert processor.get_gene("recall_threshold") == 0.3
    assert processor.get_gene("max_predictions") == 100


@pytest.mark.parametrize(
    "name",
    ["sort", "quiescence", "auto_act_method", "indexer_type", "search_depth", "time", "predict"],
)
def test_names_the_reference_rejects_are_rejected(processor: Processor, name: str) -> None:
    with pytest.raises(UnknownGene):
        processor.update_genes({name: 1})


def test_wrong_value_types_are_rejected_instead_of_breaking_predictions(
    processor: Processor,
) -> None:
    with pytest.raises(InvalidGeneValue):
        processor.update_genes({"recall_threshold": "0.5"})
    with pytest.raises(InvalidGeneValue):
        processor.update_genes({"max_predictions": 2.5})
    with pytest.raises(InvalidGeneValue):
        processor.update_genes({"always_update_frequencies": 1})
    assert processor.get_gene("recall_threshold") == 0.1


def test_upper_case_sort_turns_sorting_off(processor: Processor) -> None:
    processor.update_genes({"SORT": False})
    processor.observe(["b", "a"], unique_id="u")
    assert processor.stm == [["b", "a"]]
    assert processor.get_gene("SORT") is False
    assert processor.get_gene("sort") is True  # the start-up manifest


def test_gene_lookup_order(processor: Processor) -> None:
    processor.observe(["a"], unique_id="u")
    assert processor.get_gene("time") == 1
    assert processor.get_gene("id") == "p1"
    assert processor.get_gene("kb_id") == "p1"
    assert processor.get_gene("indexer_type") == "VI"
    with pytest.raises(GeneNotFound, match="Gene zzz not found"):
        processor.get_gene("zzz")


def test_genes_survive_clears(processor: Processor) -> None:
    processor.update_genes({"max_pattern_length": 4, "smoothness": 9})
    processor.clear_stm()
    processor.clear_all()
    assert (processor.get_gene("max_pattern_length"), processor.get_gene("smoothness")) == (4, 9)
