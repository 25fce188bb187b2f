"""Observation and STM (spec §2, §9 cases 1-7, 17, 16)."""

import pytest

from processor_image.engine import ObservationError, Processor
from tests.support.driver import Driver


def test_one_observation_is_one_event(kato: Driver) -> None:
    kato.obs("hello")
    assert kato.p.stm == [["hello"]]
    kato.obs(["a", "b", "c"])
    assert kato.p.stm == [["hello"], ["a", "b", "c"]]


def test_observe_result_reports_time_and_no_auto_learn(processor: Processor) -> None:
    result = processor.observe(["hello"], unique_id="u1")
    assert (result.unique_id, result.auto_learned_pattern, result.time) == ("u1", None, 1)


@pytest.mark.parametrize(
    ("strings", "event"),
    [
        (["z", "a", "m"], ["a", "m", "z"]),
        (["3", "1", "2"], ["1", "2", "3"]),
        (["Zoo", "Apple", "apple"], ["Apple", "Zoo", "apple"]),
        (["test_2", "test_1", "test_10"], ["test_1", "test_10", "test_2"]),
        (["!special", "@symbol", "#hash"], ["!special", "#hash", "@symbol"]),
        (["10", "2", "1", "20", "100", "3"], ["1", "10", "100", "2", "20", "3"]),
        (["z", "", "a", "middle"], ["", "a", "middle", "z"]),
        (
            ["zebra", "Zebra", "ZEBRA", "apple", "Apple", "APPLE"],
            ["APPLE", "Apple", "ZEBRA", "Zebra", "apple", "zebra"],
        ),
        (
            ["école", "zebra", "åpple", "ñoño", "normal"],
            ["normal", "zebra", "åpple", "école", "ñoño"],
        ),
        (["b", "a", "b"], ["a", "b", "b"]),
    ],
)
def test_strings_are_sorted_within_an_event(
    kato: Driver, strings: list[str], event: list[str]
) -> None:
    kato.obs(strings)
    assert kato.p.stm == [event]


def test_sort_gene_off_keeps_the_order_received(make_processor) -> None:  # type: ignore[no-untyped-def]
    p = make_processor(sort=False)
    p.observe(["z", "a"], unique_id="u")
    assert p.stm == [["z", "a"]]


def test_event_order_is_kept(kato: Driver) -> None:
    kato.obs(["z", "y", "x"], ["c", "b", "a"], ["3", "2", "1"])
    assert kato.p.stm == [["x", "y", "z"], ["a", "b", "c"], ["1", "2", "3"]]


def test_empty_observations_are_ignored_but_advance_time(kato: Driver) -> None:
    kato.obs("first", [], "second", [], "third")
    assert kato.p.stm == [["first"], ["second"], ["third"]]
    assert kato.p.time == 5


def test_vectors_become_one_symbol(processor: Processor) -> None:
    processor.observe(vectors=[[1.0, 2.0, 3.0]], unique_id="u")
    processor.observe(vectors=[list(range(100))], unique_id="u")
    assert processor.stm == [
        ["VECTOR|fe5de4472f7e4d5c9cdd19cadebfa06fe3da8e43"],
        ["VECTOR|77d5eabadc98d9ab6d88f9329939792cb266d309"],
    ]


def test_vector_part_comes_before_the_sorted_strings(processor: Processor) -> None:
    processor.observe(["multi", "modal"], [[0.5, 0.5], [1.0, 0.0]], unique_id="u")
    assert processor.stm == [["VECTOR|f11daefdddee30b6a7a043c084fad802f0553a99", "modal", "multi"]]


def test_empty_unique_id_is_rejected_after_time_advances(processor: Processor) -> None:
    with pytest.raises(ObservationError, match="no unique_id"):
        processor.observe(["a"], unique_id="")
    assert processor.time == 1
    assert processor.stm == []


def test_percept_and_cognition_data_match_the_spec_example(processor: Processor) -> None:
    processor.observe(["zebra", "apple"], emotives={"joy": 0.8}, unique_id="u")
    assert processor.percept_data() == {
        "strings": ["zebra", "apple"],
        "vectors": [],
        "emotives": {"joy": 0.8},
        "path": ["KatoProcessor-p1-process"],
        "metadata": {},
    }
    assert processor.cognition_data() == {
        "predictions": [],
        "emotives": {"joy": 0.8},
        "symbols": ["apple", "zebra"],
        "command": "",
        "metadata": {},
        "path": [],
        "strings": [],
        "vectors": [],
        "short_term_memory": [["apple", "zebra"]],
    }


def test_path_and_metadata_are_honoured(processor: Processor) -> None:
    processor.observe(["a"], unique_id="u", path=["client"], metadata={"k": 1})
    percept = processor.percept_data()
    assert percept["path"] == ["client", "KatoProcessor-p1-process"]
    assert percept["metadata"] == {"k": 1}


def test_emotive_only_observation_leaks_into_the_next_learn(kato: Driver) -> None:
    kato.obs("a", "b")
    kato.p.observe(emotives={"joy": 1.0}, unique_id="e")
    name = kato.p.learn()
    pattern = kato.p.get_pattern(name)
    assert pattern is not None
    assert pattern["emotives"] == [{"joy": 1.0}]


def test_auto_learn_keeps_the_last_event(make_processor) -> None:  # type: ignore[no-untyped-def]
    kato = Driver(make_processor(max_pattern_length=3))
    kato.obs("a")
    assert kato.p.stm == [["a"]]
    kato.obs("b")
    result = kato.p.observe(["c"], unique_id="c")
    assert result.auto_learned_pattern == "PTRN|b98534b32c1d7489d4ce1a48724aa65aeecbdba9"
    assert kato.p.stm == [["c"]]
    kato.p.clear_stm()
    kato.obs("a", "b")
    (prediction,) = kato.predictions()
    assert prediction["future"] == [["c"]]


def test_auto_learn_chunks_overlap_by_one_event(make_processor) -> None:  # type: ignore[no-untyped-def]
    p = make_processor(max_pattern_length=3)
    results = [p.observe([s], unique_id=s).auto_learned_pattern for s in "abcde"]
    assert results[:2] == [None, None]
    assert results[3] is None
    assert results[4] == "PTRN|" + __import__(
        "processor_image.engine.naming", fromlist=["x"]
    ).pattern_hash([["c"], ["d"], ["e"]])
    assert p.stm == [["e"]]


def test_auto_learn_with_length_one(make_processor) -> None:  # type: ignore[no-untyped-def]
    p = make_processor(max_pattern_length=1)
    assert p.observe(["a"], unique_id="u").auto_learned_pattern == ""
    assert p.stm == []
    result = p.observe(["a", "b"], unique_id="u")
    assert result.auto_learned_pattern == "PTRN|395314cc2f2880a00c3e6e11f1e02d8b8c45a0e4"
    assert p.stm == []


def test_lowering_max_pattern_length_learns_on_the_next_empty_observe(kato: Driver) -> None:
    kato.obs("a", "b", "c")
    kato.p.update_genes({"max_pattern_length": 2})
    result = kato.p.observe(unique_id="empty")
    assert result.auto_learned_pattern is not None
    assert result.auto_learned_pattern.startswith("PTRN|")
    assert kato.p.stm == [["c"]]
