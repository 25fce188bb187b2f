"""Genes: start values from the environment, updates and lookups (spec §5)."""

import pytest

from processor_image.engine import (
    EngineError,
    GeneNotFound,
    Genes,
    InvalidGeneValue,
    Processor,
    UnknownGene,
    validate_genes,
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


def test_an_update_with_one_unknown_name_changes_nothing(processor: Processor) -> None:
    with pytest.raises(UnknownGene, match="Unknown gene: quiescence"):
        processor.update_genes({"recall_threshold": 0.3, "quiescence": 4, "max_predictions": 7})
    assert processor.get_gene("recall_threshold") == 0.1
    assert processor.get_gene("max_predictions") == 100


def test_an_update_with_one_bad_value_changes_nothing(processor: Processor) -> None:
    with pytest.raises(InvalidGeneValue, match="persistence"):
        processor.update_genes({"max_predictions": 9, "persistence": -1})
    assert processor.get_gene("max_predictions") == 100
    assert processor.snapshot().manifest["max_predictions"] == 100


@pytest.mark.parametrize(
    "name", ["quiescence", "auto_act_method", "indexer_type", "search_depth", "time", "predict"]
)
def test_names_that_cannot_change_at_run_time_are_unknown_to_updates(
    processor: Processor, name: str
) -> None:
    with pytest.raises(UnknownGene):
        processor.update_genes({name: 1})


@pytest.mark.parametrize(
    ("genes", "expected"),
    [
        ({"recall_threshold": "0.5"}, "a number from 0 to 1"),
        ({"recall_threshold": 7}, "a number from 0 to 1"),
        ({"max_predictions": 2.5}, "an integer >= 0"),
        ({"max_predictions": -3}, "an integer >= 0"),
        ({"persistence": -1}, "an integer >= 1"),
        ({"max_pattern_length": -1}, "an integer >= 0"),
        ({"always_update_frequencies": 1}, "true or false"),
        ({"SORT": "no"}, "true or false"),
    ],
)
def test_wrong_types_and_out_of_range_values_are_rejected(
    processor: Processor, genes: dict[str, object], expected: str
) -> None:
    with pytest.raises(InvalidGeneValue, match=expected):
        processor.update_genes(genes)
    assert processor.get_gene("recall_threshold") == 0.1


@pytest.mark.parametrize("name", ["sort", "SORT"])
def test_sort_changes_under_its_public_and_internal_name(processor: Processor, name: str) -> None:
    processor.update_genes({name: False})
    processor.observe(["b", "a"], unique_id="u")
    assert processor.stm == [["b", "a"]]
    assert processor.get_gene("SORT") is False
    assert processor.get_gene("sort") is False


def test_validation_admits_start_up_genes_by_manifest_key_or_alias() -> None:
    checked = validate_genes({"quiescence": 4, "SORT": False, "recall_threshold": 1})
    assert checked == {"quiescence": 4, "sort": False, "recall_threshold": 1.0}
    assert validate_genes({"max_predictions": 3.0}, updating=True) == {"max_predictions": 3}
    with pytest.raises(UnknownGene):
        validate_genes({"quiescence": 4}, updating=True)
    with pytest.raises(InvalidGeneValue, match='"VI"'):
        validate_genes({"indexer_type": "other"})


def test_a_restored_state_with_bad_genes_changes_nothing(processor: Processor) -> None:
    processor.observe(["a"], unique_id="u")
    state = processor.snapshot()
    state.genes.recall_threshold = 7
    state.time = 99
    with pytest.raises(InvalidGeneValue, match="recall_threshold"):
        processor.restore(state)
    assert processor.time == 1


def test_out_of_range_start_up_values_are_reported() -> None:
    with pytest.raises(InvalidGeneValue, match="max_predictions"):
        Genes.from_env({"MAX_PREDICTIONS": "-1"})


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
