"""Learning, naming, emotives and knowledge-base statistics (spec §3, §8, §9 cases 12-15)."""

import re

from processor_image.engine import Processor
from tests.support.driver import Driver


def test_learn_returns_a_prefixed_sha1_and_empties_stm(kato: Driver) -> None:
    name = kato.learn("test", "model", "hash")
    assert re.fullmatch(r"PTRN\|[0-9a-f]{40}", name)
    assert kato.p.stm == []


def test_too_little_to_learn_gives_an_empty_name(kato: Driver) -> None:
    assert kato.learn("lonely") == ""
    assert kato.p.learn() == ""
    assert kato.learn(["alpha", "beta", "gamma"]).startswith("PTRN|")


def test_same_sequence_same_name_and_frequency_counts(kato: Driver) -> None:
    first = kato.learn("a", "b")
    assert kato.learn("a", "b") == first
    kato.p.clear_all()
    assert kato.learn("a", "b") == first
    kato.learn("a", "b")
    pattern = kato.p.get_pattern(first)
    assert pattern is not None
    assert pattern["frequency"] == 2


def test_learned_emotives_match_the_spec_example(kato: Driver) -> None:
    for symbol, emotives in [("0", (0.1, 0.2)), ("1", (0.5, 0.6)), ("2", (0.9, 0.8))]:
        kato.p.observe(
            [symbol],
            emotives={"happiness": emotives[0], "confidence": emotives[1]},
            unique_id=symbol,
        )
    name = kato.p.learn()
    assert kato.p.get_pattern(name) == {
        "name": "PTRN|db33f21101265857f7923dccac3a2a29191646ee",
        "pattern_data": [["0"], ["1"], ["2"]],
        "length": 3,
        "frequency": 1,
        "emotives": [{"happiness": 0.5, "confidence": 0.5333333333333333}],
    }
    stats = kato.p.kb.symbol_stats(["0", "1", "2"])
    for symbol in "012":
        assert stats[symbol].frequency == 1
        assert stats[symbol].pattern_member_frequency == 1
        assert stats[symbol].emotives == {"happiness": 0.5, "confidence": 0.5333333333333333}


def test_persistence_keeps_a_rolling_window_of_emotives(kato: Driver) -> None:
    for i in range(7):
        kato.p.observe(["p"], emotives={"v": i}, unique_id=f"p{i}")
        kato.p.observe(["q"], unique_id=f"q{i}")
        name = kato.p.learn()
    pattern = kato.p.get_pattern(name)
    assert pattern is not None
    assert pattern["frequency"] == 7
    assert pattern["emotives"] == [{"v": 2.0}, {"v": 3.0}, {"v": 4.0}, {"v": 5.0}, {"v": 6.0}]
    kato.obs("p", "q")
    assert kato.predictions()[0]["emotives"] == {"v": 4.0}


def test_persistence_updates_are_reported_but_do_not_resize_the_window(kato: Driver) -> None:
    kato.p.update_genes({"persistence": 2})
    assert kato.p.get_gene("persistence") == 2
    for i in range(4):
        kato.p.observe(["p", "q"], emotives={"v": i}, unique_id=f"p{i}")
        name = kato.p.learn()
    pattern = kato.p.get_pattern(name)
    assert pattern is not None
    assert len(pattern["emotives"]) == 4


def test_zero_emotives_push_an_empty_dict(kato: Driver) -> None:
    kato.p.observe(["a", "b"], emotives={"x": 0}, unique_id="u")
    pattern = kato.p.get_pattern(kato.p.learn())
    assert pattern is not None
    assert pattern["emotives"] == [{}]


def test_a_pattern_first_learned_without_emotives_can_gain_them(kato: Driver) -> None:
    """Decision Q4: no storage error, the window simply starts later."""
    name = kato.learn("a", "b")
    kato.p.observe(["a"], emotives={"joy": 1.0}, unique_id="a")
    kato.obs("b")
    assert kato.p.learn() == name
    pattern = kato.p.get_pattern(name)
    assert pattern is not None
    assert pattern["emotives"] == [{"joy": 1.0}]


def test_totals_follow_the_invariants(kato: Driver) -> None:
    for _ in range(3):
        kato.learn("freq", "test")
    totals = kato.p.kb.totals()
    assert (
        totals.total_pattern_frequencies,
        totals.total_symbol_frequencies,
        totals.total_symbols_in_patterns_frequencies,
    ) == (3, 6, 6)
    stats = kato.p.kb.symbol_stats(["freq", "test"])
    assert {s: (v.frequency, v.pattern_member_frequency) for s, v in stats.items()} == {
        "freq": (3, 3),
        "test": (3, 3),
    }


def test_learn_keeps_predictions_time_and_current_emotives(processor: Processor) -> None:
    processor.observe(["x", "y"], emotives={"joy": 1.0}, unique_id="u")
    processor.learn()
    processor.observe(["x", "y"], emotives={"joy": 0.5}, unique_id="v")
    before = processor.predictions()
    processor.learn()
    assert processor.predictions() == before
    assert before
    assert processor.time == 2
    assert processor.cognition_data()["emotives"] == {"joy": 0.5}


def test_clear_all_wipes_knowledge_and_time_but_keeps_genes(kato: Driver) -> None:
    kato.p.update_genes({"recall_threshold": 0.4})
    kato.learn("a", "b")
    kato.obs("a", "b")
    kato.p.clear_all()
    assert (kato.p.time, kato.p.stm, kato.p.predictions(), kato.p.pattern_count()) == (0, [], [], 0)
    assert kato.p.get_gene("recall_threshold") == 0.4
    assert kato.p.kb.totals().total_pattern_frequencies == 0
    kato.obs("a", "b")
    assert kato.predictions() == []


def test_pattern_lookup_with_or_without_prefix_and_unknown(kato: Driver) -> None:
    name = kato.learn("hello", "world", "test")
    bare = name.removeprefix("PTRN|")
    assert kato.p.get_pattern(name) == kato.p.get_pattern(bare)
    assert kato.p.get_pattern("PTRN|" + "0" * 40) is None
