"""Prediction fields, thresholds and storage (spec §4, §9 cases 8-42, 44-45)."""

from typing import Any

import pytest

from processor_image.engine import Processor
from tests.support.driver import Driver

WORKED_EXAMPLE = {
    "type": "prototypical",
    "name": "PTRN|386fbb12926e8e015a1483990df913e8410f94ce",
    "frequency": 1,
    "emotives": {},
    "matches": ["hello", "world"],
    "past": [],
    "present": [["hello"], ["world"]],
    "missing": [],
    "extras": [],
    "potential": 3.666666666667,
    "evidence": 0.6666666666666666,
    "similarity": 0.8,
    "fragmentation": 0.0,
    "snr": 1.0,
    "entropy": 1.056641667147,
    "hamiltonian": 0.630929753571,
    "grand_hamiltonian": 0.666666666667,
    "confluence": 0.888888888889,
    "sequence": [["hello"], ["world"], ["test"]],
    "future": [["test"]],
    "confidence": 1.0,
    "itfdf_similarity": 1.0,
}


def by_name(kato: Driver, name: str) -> dict[str, Any]:
    (found,) = [p for p in kato.predictions() if p["name"] == name]
    return found


def test_worked_example_full_object(kato: Driver) -> None:
    kato.learn("hello", "world", "test")
    kato.obs("hello", "world")
    assert kato.predictions() == [WORKED_EXAMPLE]


def test_one_symbol_never_predicts(kato: Driver) -> None:
    kato.learn("alpha", "beta", "gamma")
    kato.obs("alpha")
    assert kato.predictions() == []
    assert kato.p.stm == [["alpha"]]


def test_two_symbols_predict_in_one_event_or_two(kato: Driver) -> None:
    kato.learn("one", "two", "three")
    kato.obs("one", "two")
    assert kato.predictions()
    kato.p.clear_stm()
    kato.obs(["one", "two"])
    assert kato.predictions()[0]["similarity"] == 0.8


def test_empty_observations_do_not_count_and_keep_the_cache(kato: Driver) -> None:
    kato.learn("x", "y", "z")
    kato.obs("x", [], [])
    assert kato.predictions() == []
    kato.obs("y")
    cached = kato.predictions()
    assert cached
    kato.obs([])
    assert kato.predictions() == cached


def test_emotives_do_not_count_toward_the_minimum(kato: Driver) -> None:
    kato.p.observe(["happy"], emotives={"joy": 1.0}, unique_id="a")
    kato.obs("day")
    kato.p.learn()
    kato.p.observe(["happy"], emotives={"joy": 0.9, "excitement": 0.5}, unique_id="b")
    assert kato.predictions() == []
    kato.obs("day")
    assert kato.predictions()


def test_one_string_plus_a_vector_predicts(kato: Driver) -> None:
    kato.p.observe(["a"], [[1.0]], unique_id="a")
    kato.obs("b")
    kato.p.learn()
    kato.p.observe(["a"], [[1.0]], unique_id="c")
    assert kato.predictions()


def test_frequency_three_is_a_perfect_match(kato: Driver) -> None:
    for _ in range(3):
        kato.learn("freq", "test")
    kato.obs("freq", "test")
    (p,) = kato.predictions()
    assert (p["frequency"], p["similarity"], p["potential"], p["future"]) == (3, 1.0, 4.0, [])


@pytest.mark.parametrize(
    ("pattern", "observed", "threshold", "expected"),
    [
        (
            ["start", "middle", "end"],
            ["start", "middle"],
            0.3,
            {
                "past": [],
                "present": [["start"], ["middle"]],
                "future": [["end"]],
                "missing": [],
                "extras": [],
            },
        ),
        (
            ["beginning", "middle", "end"],
            ["middle", "end"],
            0.3,
            {"past": [["beginning"]], "present": [["middle"], ["end"]], "future": []},
        ),
        (
            [["hello", "world"], ["bar", "foo"]],
            ["hello", "foo"],
            0.1,
            {"present": [["hello", "world"], ["bar", "foo"]], "missing": ["world", "bar"]},
        ),
        (
            [["a", "b"], ["c", "d"], ["e", "f"]],
            ["a", "c"],
            0.1,
            {
                "present": [["a", "b"], ["c", "d"]],
                "missing": ["b", "d"],
                "future": [["e", "f"]],
                "similarity": 0.5,
                "confidence": 0.5,
                "fragmentation": 1.0,
            },
        ),
        (
            [["a", "b"], ["c", "d"]],
            [["a", "x"], ["c", "y"]],
            0.1,
            {
                "matches": ["a", "c"],
                "missing": ["b", "d"],
                "extras": ["x", "y"],
                "similarity": 0.5,
                "evidence": 0.5,
                "confidence": 0.5,
                "snr": 1 / 3,
                "fragmentation": 1.0,
                "entropy": 2.0,
                "hamiltonian": 1.0,
                "grand_hamiltonian": 1.0,
                "confluence": 0.99609375,
                "itfdf_similarity": 0.707106781187,
                "potential": 1.54044011452,
            },
        ),
        (
            [["begin", "start"], ["middle"], ["end"]],
            ["begin", "middle"],
            0.1,
            {
                "present": [["begin", "start"], ["middle"]],
                "missing": ["start"],
                "future": [["end"]],
                "fragmentation": 1.0,
            },
        ),
        (
            [["begin", "start"], ["middle"], ["end"]],
            ["start", "middle"],
            0.1,
            {
                "past": [],
                "present": [["begin", "start"], ["middle"]],
                "missing": ["begin"],
                "fragmentation": 0.0,
                "potential": 2.983163247595,
            },
        ),
        (
            [["start"], ["middle"], ["end", "finish"]],
            ["middle", "end"],
            0.1,
            {
                "past": [["start"]],
                "present": [["middle"], ["end", "finish"]],
                "missing": ["finish"],
                "similarity": 2 / 3,
                "evidence": 0.5,
                "confidence": 2 / 3,
                "potential": 2.983163247595,
            },
        ),
        (
            ["alpha", "beta"],
            [["alpha", "unexpected"], ["beta", "extra"]],
            0.1,
            {"extras": ["unexpected", "extra"], "snr": 1 / 3, "similarity": 2 / 3},
        ),
        (
            ["a", "b"],
            ["a", "b", "c", "d", "e"],
            0.1,
            {
                "present": [["a"], ["b"]],
                "extras": ["c", "d", "e"],
                "similarity": 4 / 7,
                "evidence": 1.0,
                "snr": 1 / 7,
            },
        ),
        (
            [f"s{i}" for i in range(1, 9)],
            ["s1", "s3", "s5", "s7"],
            0.1,
            {
                "present": [[f"s{i}"] for i in range(1, 8)],
                "missing": ["s2", "s4", "s6"],
                "future": [["s8"]],
                "fragmentation": 3.0,
                "similarity": 2 / 3,
            },
        ),
        (
            ["x", "y", "z"],
            ["x", "y"],
            0.1,
            {
                "present": [["x"], ["y"]],
                "future": [["z"]],
                "similarity": 0.8,
                "potential": 3.666666666667,
            },
        ),
        (
            [["alpha", "beta", "gamma"]],
            [["alpha", "gamma"]],
            0.2,
            {"missing": ["beta"], "similarity": 0.8},
        ),
        (
            [["a", "b", "a", "c", "b"]],
            [["a", "b"]],
            0.1,
            {
                "present": [["a", "a", "b", "b", "c"]],
                "missing": ["c"],
                "similarity": 4 / 7,
                "confidence": 0.4,
            },
        ),
        (
            ["x", "a", "a", "b"],
            ["a", "b"],
            0.1,
            {"past": [["x"]], "present": [["a"], ["a"], ["b"]], "confidence": 2 / 3, "missing": []},
        ),
    ],
    ids=[
        "case18_start_middle_end",
        "case19_beginning_middle_end",
        "case20_two_events_missing",
        "case21_three_pairs",
        "case22_extras_and_every_metric",
        "case23_begin_middle_two_blocks",
        "case23_fixup_moves_past_into_present",
        "case24_last_event_partly_matched",
        "case26_extras_in_each_event",
        "case27_trailing_extras",
        "case28_four_blocks",
        "case29_x_y_z",
        "case30_single_event_pattern",
        "case31_repeated_symbols",
        "q9_fixup_on_repeated_symbols",
    ],
)
def test_prediction_fields_of_the_reference_cases(
    kato: Driver,
    pattern: list[Any],
    observed: list[Any],
    threshold: float,
    expected: dict[str, object],
) -> None:
    kato.p.update_genes({"recall_threshold": threshold})
    kato.learn(*pattern)
    kato.obs(*observed)
    (prediction,) = kato.predictions()
    for key, value in expected.items():
        assert prediction[key] == (pytest.approx(value) if isinstance(value, float) else value), key


def test_long_pattern_is_found_despite_a_short_one(kato: Driver) -> None:
    """Case 25: exhaustive semantics, the reference's lossy filter is not reproduced."""
    kato.learn("a", "b")
    long_name = kato.learn(*[f"q{i}" for i in range(25)])
    kato.obs("q0", "q1", "q2")
    (prediction,) = kato.predictions()
    assert prediction["name"] == long_name
    assert prediction["similarity"] == pytest.approx(6 / 28)


def test_ensemble_of_two_patterns(kato: Driver) -> None:
    first = kato.learn("a", "b", "c")
    second = kato.learn("a", "x", "y")
    kato.obs("a", "b")
    one, two = kato.predictions()
    assert first == "PTRN|b98534b32c1d7489d4ce1a48724aa65aeecbdba9" == one["name"]
    assert (one["similarity"], one["potential"], one["confluence"]) == (
        0.8,
        3.666666666667,
        0.472222222222,
    )
    assert two["name"] == second
    assert second.startswith("PTRN|8ab15a18")
    assert two["matches"] == ["a"]
    assert two["extras"] == ["b"]
    assert two["future"] == [["x"], ["y"]]
    assert (two["similarity"], two["snr"]) == (0.4, pytest.approx(1 / 3))
    assert (two["itfdf_similarity"], two["potential"]) == (0.9472135955, 2.391658039944)


def test_prediction_carries_the_averaged_emotive_window(kato: Driver) -> None:
    for symbol, (h, c) in [("0", (0.1, 0.2)), ("1", (0.5, 0.6)), ("2", (0.9, 0.8))]:
        kato.p.observe([symbol], emotives={"happiness": h, "confidence": c}, unique_id=symbol)
    kato.p.learn()
    kato.obs("0", "1")
    assert kato.predictions()[0]["emotives"] == {"happiness": 0.5, "confidence": 0.5333333333333333}


def test_branching_patterns(kato: Driver) -> None:
    kato.learn("root", "branch", "leaf1")
    leaf2 = kato.learn("root", "branch", "leaf2")
    kato.learn("root", "trunk", "bark")
    kato.obs("root", "branch")
    both = [p for p in kato.predictions() if {"root", "branch"} <= set(p["matches"])]
    assert len(both) >= 2
    kato.obs("leaf1")
    prediction = by_name(kato, leaf2)
    assert prediction["similarity"] == pytest.approx(2 / 3)
    assert prediction["future"] == [["leaf2"]]


def test_repetitive_pattern_single_block(kato: Driver) -> None:
    a, b, c = ["a1", "a2"], ["b1", "b2", "b3"], ["c1"]
    kato.learn(*([a, b, c] * 4))
    kato.obs(c, a)
    (p,) = kato.predictions()
    assert p["fragmentation"] == 0.0
    assert p["past"] == [a, b]
    assert p["present"] == [c, a]
    assert p["future"][0] == b


def test_threshold_zero_returns_every_pattern(kato: Driver) -> None:
    kato.p.update_genes({"recall_threshold": 0.0})
    for words in [
        "exact match test",
        "partial match different",
        "completely unrelated sequence",
        "another random pattern",
    ]:
        kato.learn(*words.split())
    kato.obs("partial", "match")
    predictions = kato.predictions()
    assert sorted(p["similarity"] for p in predictions) == [0.0, 0.0, 0.4, 0.8]
    for p in predictions:
        if p["similarity"] == 0.0:
            assert (p["matches"], p["past"], p["present"], p["extras"]) == (
                [],
                [],
                p["sequence"],
                ["partial", "match"],
            )
            assert p["missing"] == [s for e in p["sequence"] for s in e]
            assert (p["snr"], p["fragmentation"], p["confidence"], p["evidence"]) == (
                -1.0,
                -1.0,
                0.0,
                0.0,
            )
            assert (p["itfdf_similarity"], p["potential"]) == (0.75, 0.75)


def test_negative_threshold_drops_patterns_without_a_match(kato: Driver) -> None:
    # Updates refuse it now (0..1, spec §5.2 project decision); the engine's rule (§4.5) stays.
    kato.p.genes.recall_threshold = -0.5
    kato.learn("a", "b")
    kato.learn("c", "d")
    kato.obs("a", "z")
    assert [p["matches"] for p in kato.predictions()] == [["a"]]


def test_threshold_point_one_drops_unrelated(kato: Driver) -> None:
    kato.learn("normal", "sequence", "here")
    kato.obs("random1", "random2")
    assert kato.predictions() == []


def test_threshold_one_needs_an_exact_match(kato: Driver) -> None:
    kato.p.update_genes({"recall_threshold": 1.0})
    for words in ["perfect match test", "almost perfect match", "different sequence here"]:
        kato.learn(*words.split())
    kato.obs("perfect", "match", "test")
    assert [p["similarity"] for p in kato.predictions()] == [1.0]
    kato.p.clear_stm()
    kato.obs("perfect", "match")
    assert kato.predictions() == []


def test_threshold_is_inclusive(kato: Driver) -> None:
    kato.p.update_genes({"recall_threshold": 0.6})
    kato.learn(*[f"m{i}" for i in range(1, 8)])
    kato.learn("m1", "m2", "m3", "n4", "n5", "n6", "n7")
    kato.obs("m1", "m2", "m3")
    predictions = kato.predictions()
    assert len(predictions) == 2
    assert {(p["similarity"], p["potential"], p["itfdf_similarity"]) for p in predictions} == {
        (0.6, 3.428571428571, 1.0)
    }


def test_threshold_point_seven(kato: Driver) -> None:
    kato.p.update_genes({"recall_threshold": 0.7})
    first = kato.learn("exact", "match", "pattern", "here")
    kato.learn("exact", "match", "different", "end")
    kato.obs("exact", "match", "pattern")
    assert [(p["name"], p["similarity"]) for p in kato.predictions()] == [(first, 6 / 7)]


def test_runtime_threshold_change_applies_on_the_next_observe(kato: Driver) -> None:
    for words in ["runtime test one", "runtime test two", "different test three"]:
        kato.learn(*words.split())
    kato.obs("runtime", "test")
    assert sorted(p["similarity"] for p in kato.predictions()) == [0.4, 0.8, 0.8]
    kato.p.clear_stm()
    kato.p.update_genes({"recall_threshold": 0.7})
    kato.obs("runtime", "test")
    assert len(kato.predictions()) == 2


def test_long_pattern_low_threshold(kato: Driver) -> None:
    kato.p.update_genes({"recall_threshold": 0.05})
    events = [[f"e{i}a", f"e{i}b", f"e{i}c"] for i in range(50)]
    kato.learn(*events)
    kato.obs(events[24], events[25])
    (p,) = kato.predictions()
    assert p["similarity"] == pytest.approx(12 / 156)
    assert (len(p["past"]), len(p["present"]), len(p["future"])) == (24, 2, 24)


def test_max_predictions_caps_and_orders_by_potential(kato: Driver) -> None:
    for words in ["a b c", "a b d e f", "a x y", "a b"]:
        kato.learn(*words.split())
    kato.obs("a", "b")
    potentials = [p["potential"] for p in kato.predictions()]
    assert potentials == sorted(potentials, reverse=True)
    assert len(potentials) == 4
    kato.p.update_genes({"max_predictions": 2})
    kato.obs("c")
    assert len(kato.predictions()) == 2
    kato.p.update_genes({"max_predictions": 0})
    kato.obs("d")
    assert kato.predictions() == []


def test_stored_predictions_by_unique_id(processor: Processor) -> None:
    processor.observe(["a"], unique_id="1")
    processor.observe(["b"], unique_id="2")
    processor.learn()
    processor.observe(["a"], unique_id="lonely")
    processor.observe(["b"], unique_id="hit")
    hit = processor.predictions()
    processor.observe(["zzz"], unique_id="hit")
    assert processor.predictions("hit") == hit
    assert hit[0]["name"].startswith("PTRN|")
    assert processor.predictions("lonely") == []
    assert processor.predictions("unknown") == []
    stored = processor.kb.find_predictions("hit")
    assert stored is not None
    assert stored[0]["name"] == hit[0]["name"].removeprefix("PTRN|")


def test_clear_stm_resets_the_cache_and_the_minimum(kato: Driver) -> None:
    kato.learn("a", "b")
    kato.obs("a", "b")
    kato.p.clear_stm()
    assert kato.predictions() == []
    kato.obs("a")
    assert kato.predictions() == []
