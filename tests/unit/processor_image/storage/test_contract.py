"""The KnowledgeBase contract (spec §3, §4.10, §8): every store must pass every test here."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from msgspec.json import encode

from processor_image.engine.knowledge import KnowledgeBase, KnowledgeDump, Totals
from processor_image.engine.naming import pattern_hash
from tests.support.knowledge_bases import MakeKb, new_kb_id

FREQ_TEST = [["freq"], ["test"]]


def learn(
    kb: KnowledgeBase,
    pattern: list[list[str]],
    emotives: dict[str, float] | None = None,
    persistence: int = 5,
) -> bool:
    return kb.learn(pattern_hash(pattern), pattern, emotives, persistence)


def sorted_dump(kb: KnowledgeBase) -> dict[str, Any]:
    """The dump as plain data with patterns and symbols in name order (stores may differ)."""
    data: dict[str, Any] = msgspec.to_builtins(kb.dump())
    data["patterns"].sort(key=lambda p: p["name"])
    data["symbols"].sort(key=lambda s: s["name"])
    return data


def test_first_learn_creates_the_pattern_and_repeats_count_frequency(kb: KnowledgeBase) -> None:
    name = pattern_hash(FREQ_TEST)
    assert learn(kb, FREQ_TEST) is True
    assert learn(kb, FREQ_TEST) is False
    assert learn(kb, FREQ_TEST) is False
    record = kb.get_pattern(name)
    assert record is not None
    assert (record.name, record.pattern_data, record.length, record.frequency) == (
        name,
        FREQ_TEST,
        2,
        3,
    )


def test_pattern_learned_without_emotives_has_an_empty_emotives_list(kb: KnowledgeBase) -> None:
    learn(kb, [["a", "b"]])
    record = kb.get_pattern(pattern_hash([["a", "b"]]))
    assert record is not None
    assert record.emotives == []
    assert record.length == 2


def test_spec_example_pattern_and_symbols_carry_the_averaged_emotives(kb: KnowledgeBase) -> None:
    pattern = [["0"], ["1"], ["2"]]
    emotives = {"happiness": 0.5, "confidence": 0.5333333333333333}
    learn(kb, pattern, emotives)
    record = kb.get_pattern("db33f21101265857f7923dccac3a2a29191646ee")
    assert record is not None
    assert msgspec.to_builtins(record) == {
        "name": "db33f21101265857f7923dccac3a2a29191646ee",
        "pattern_data": [["0"], ["1"], ["2"]],
        "length": 3,
        "frequency": 1,
        "emotives": [{"happiness": 0.5, "confidence": 0.5333333333333333}],
    }
    stats = kb.symbol_stats(["0", "1", "2"])
    for symbol in "012":
        assert stats[symbol].frequency == 1
        assert stats[symbol].pattern_member_frequency == 1
        assert stats[symbol].emotives == emotives


def test_persistence_window_keeps_the_last_entries(kb: KnowledgeBase) -> None:
    pattern = [["p"], ["q"]]
    for i in range(7):
        learn(kb, pattern, {"v": float(i)} if i else {}, persistence=5)
    record = kb.get_pattern(pattern_hash(pattern))
    assert record is not None
    assert record.frequency == 7
    assert record.emotives == [{"v": 2.0}, {"v": 3.0}, {"v": 4.0}, {"v": 5.0}, {"v": 6.0}]


def test_zero_only_emotives_push_an_empty_dict_and_leave_symbols_without_emotives(
    kb: KnowledgeBase,
) -> None:
    # The engine passes {} for an accumulator of {'x': 0}: non-empty before zeros were removed.
    learn(kb, [["a"], ["b"]], {})
    record = kb.get_pattern(pattern_hash([["a"], ["b"]]))
    assert record is not None
    assert record.emotives == [{}]
    assert kb.symbol_stats(["a"])["a"].emotives == {}


def test_pattern_first_learned_without_emotives_can_gain_them(kb: KnowledgeBase) -> None:
    learn(kb, FREQ_TEST)
    learn(kb, FREQ_TEST, {"joy": 0.5})
    learn(kb, FREQ_TEST)
    record = kb.get_pattern(pattern_hash(FREQ_TEST))
    assert record is not None
    assert record.emotives == [{"joy": 0.5}]
    assert record.frequency == 3


def test_persistence_zero_keeps_no_emotives(kb: KnowledgeBase) -> None:
    learn(kb, FREQ_TEST, {"joy": 0.5}, persistence=0)
    record = kb.get_pattern(pattern_hash(FREQ_TEST))
    assert record is not None
    assert record.emotives == []


def test_spec_example_totals_and_symbol_stats_after_three_learns(kb: KnowledgeBase) -> None:
    for _ in range(3):
        learn(kb, FREQ_TEST)
    assert kb.totals() == Totals(
        total_pattern_frequencies=3,
        total_symbol_frequencies=6,
        total_symbols_in_patterns_frequencies=6,
    )
    stats = kb.symbol_stats(["freq", "test"])
    assert {name: (s.frequency, s.pattern_member_frequency) for name, s in stats.items()} == {
        "freq": (3, 3),
        "test": (3, 3),
    }


def test_a_repeated_symbol_counts_every_occurrence_but_one_membership(kb: KnowledgeBase) -> None:
    learn(kb, [["a"], ["a", "b"], ["a"]])
    stats = kb.symbol_stats(["a", "b"])
    assert (stats["a"].frequency, stats["a"].pattern_member_frequency) == (3, 1)
    assert (stats["b"].frequency, stats["b"].pattern_member_frequency) == (1, 1)
    assert kb.totals() == Totals(
        total_pattern_frequencies=1,
        total_symbol_frequencies=4,
        total_symbols_in_patterns_frequencies=2,
    )


def test_symbol_emotives_are_summed_over_learns(kb: KnowledgeBase) -> None:
    learn(kb, [["a"], ["b"]], {"joy": 0.25})
    learn(kb, [["a"], ["c"]], {"joy": 0.5, "fear": 1.0})
    learn(kb, [["a"], ["d"]])
    stats = kb.symbol_stats(["a", "b", "c", "d"])
    assert stats["a"].emotives == {"joy": 0.75, "fear": 1.0}
    assert stats["b"].emotives == {"joy": 0.25}
    assert stats["d"].emotives == {}


def test_totals_invariants_hold_after_mixed_learns(kb: KnowledgeBase) -> None:
    patterns = [
        [["a"], ["b"]],
        [["a", "b"], ["c"], ["a"]],
        [["x", "y", "z"]],
        [["a"], ["b"]],
        [["q"], ["q"], ["q"]],
    ]
    for pattern in patterns * 2:
        learn(kb, pattern)
    records = list(kb.iter_patterns())
    symbols = kb.symbol_stats({s for p in patterns for e in p for s in e})
    totals = kb.totals()
    assert totals.total_pattern_frequencies == sum(r.frequency for r in records) == 10
    assert totals.total_symbol_frequencies == sum(r.frequency * r.length for r in records)
    assert totals.total_symbols_in_patterns_frequencies == sum(
        s.pattern_member_frequency for s in symbols.values()
    )
    assert totals.total_symbol_frequencies == sum(s.frequency for s in symbols.values())


def test_fresh_store_is_empty_with_zero_totals(kb: KnowledgeBase) -> None:
    assert kb.totals() == Totals()
    assert kb.pattern_count() == 0
    assert kb.symbol_count() == 0
    assert list(kb.iter_patterns()) == []


def test_unknown_pattern_is_none(kb: KnowledgeBase) -> None:
    learn(kb, FREQ_TEST)
    assert kb.get_pattern("0" * 40) is None


def test_get_patterns_returns_only_the_stored_ones(kb: KnowledgeBase) -> None:
    learn(kb, FREQ_TEST)
    learn(kb, [["x"], ["y"]])
    found = kb.get_patterns([pattern_hash(FREQ_TEST), "0" * 40])
    assert list(found) == [pattern_hash(FREQ_TEST)]
    assert found[pattern_hash(FREQ_TEST)].pattern_data == FREQ_TEST


def test_pattern_records_and_member_frequencies_answer_for_every_stored_name(
    kb: KnowledgeBase,
) -> None:
    """What predictions read: every stored one asked for (a store may answer with more)."""
    learn(kb, [["a", "b", "a"], ["c"]])
    learn(kb, [["a"], ["d"]])
    learn(kb, [["a"], ["d"]])
    names = [pattern_hash([["a"], ["d"]]), "0" * 40]
    records = kb.pattern_records(names)
    assert records[names[0]].frequency == 2
    assert names[1] not in records
    members = kb.member_frequencies(["a", "c", "d", "nope"])
    assert {symbol: members[symbol] for symbol in "acd"} == {"a": 3, "c": 1, "d": 2}
    assert "nope" not in members


def test_iter_patterns_and_pattern_count_see_every_pattern(kb: KnowledgeBase) -> None:
    patterns = [[[f"s{i}"], [f"t{i}"]] for i in range(25)]
    for pattern in patterns:
        learn(kb, pattern)
    learn(kb, patterns[0])
    assert kb.pattern_count() == 25
    assert sorted(r.name for r in kb.iter_patterns()) == sorted(map(pattern_hash, patterns))


def test_symbol_stats_leave_out_unknown_names_and_symbol_count_is_distinct(
    kb: KnowledgeBase,
) -> None:
    learn(kb, [["a", "b"], ["c"]])
    learn(kb, [["a"], ["d"]])
    assert set(kb.symbol_stats(["a", "nope", "d"])) == {"a", "d"}
    assert kb.symbol_stats([]) == {}
    assert kb.symbol_count() == 4


def test_find_predictions_returns_the_first_record_for_an_id(kb: KnowledgeBase) -> None:
    first = [{"name": "aa", "potential": 1.5, "matches": ["a"], "emotives": {"joy": 0.5}}]
    kb.store_predictions("u1", encode(first))
    kb.store_predictions("u1", encode([{"name": "bb"}]))
    kb.store_predictions("u2", encode([{"name": "cc", "present": [["a", "b"], ["c"]]}]))
    assert kb.find_predictions("u1") == first
    assert kb.find_predictions("u2") == [{"name": "cc", "present": [["a", "b"], ["c"]]}]
    assert kb.find_predictions("unknown") is None


def test_emotive_names_with_dots_dollars_and_percents_round_trip(kb: KnowledgeBase) -> None:
    emotives = {"a.b": 1.0, "$x": 2.0, "50%": 3.0, "": 4.0, "%2E": 5.0}
    learn(kb, FREQ_TEST, emotives)
    learn(kb, FREQ_TEST, emotives)
    record = kb.get_pattern(pattern_hash(FREQ_TEST))
    assert record is not None
    assert record.emotives == [emotives, emotives]
    assert kb.symbol_stats(["freq"])["freq"].emotives == {k: 2 * v for k, v in emotives.items()}
    kb.store_predictions("u", encode([{"name": "aa", "emotives": emotives}]))
    assert kb.find_predictions("u") == [{"name": "aa", "emotives": emotives}]


def test_clear_wipes_everything_and_recreates_zero_totals(kb: KnowledgeBase) -> None:
    learn(kb, FREQ_TEST, {"joy": 1.0})
    kb.store_predictions("u1", encode([{"name": "aa"}]))
    kb.clear()
    assert kb.totals() == Totals()
    assert kb.pattern_count() == 0
    assert kb.symbol_count() == 0
    assert kb.get_pattern(pattern_hash(FREQ_TEST)) is None
    assert kb.find_predictions("u1") is None
    assert learn(kb, FREQ_TEST) is True
    assert kb.totals().total_pattern_frequencies == 1


def test_dump_then_load_into_a_fresh_store_reproduces_everything(make_kb: MakeKb) -> None:
    source = make_kb()
    for i in range(4):
        learn(source, [["a"], [f"b{i}"]], {"joy": float(i + 1)}, persistence=2)
        learn(source, [["a"], ["b0"]], {"joy.x": 0.5}, persistence=2)
    source.store_predictions("u1", encode([{"name": "first", "emotives": {"$j": 1.0}}]))
    source.store_predictions("u1", encode([{"name": "second"}]))
    target = make_kb()
    learn(target, [["old"], ["stuff"]])
    target.load(source.dump())
    assert sorted_dump(target) == sorted_dump(source)
    assert target.find_predictions("u1") == [{"name": "first", "emotives": {"$j": 1.0}}]
    assert target.get_pattern(pattern_hash([["old"], ["stuff"]])) is None
    assert target.pattern_count() == 4
    assert target.symbol_count() == 5
    assert learn(target, [["a"], ["b3"]]) is False


def test_dump_is_a_copy_that_later_learns_do_not_change(kb: KnowledgeBase) -> None:
    learn(kb, FREQ_TEST, {"joy": 1.0})
    dump = kb.dump()
    learn(kb, FREQ_TEST, {"joy": 2.0})
    assert dump.patterns[0].frequency == 1
    assert dump.totals.total_pattern_frequencies == 1


def test_empty_dump_loads_into_an_empty_store(make_kb: MakeKb) -> None:
    kb = make_kb()
    learn(kb, FREQ_TEST)
    kb.load(KnowledgeDump())
    assert kb.pattern_count() == 0
    assert kb.totals() == Totals()


def test_different_kb_ids_never_see_each_other(make_kb: MakeKb) -> None:
    first, second = make_kb(), make_kb()
    learn(first, FREQ_TEST, {"joy": 1.0})
    first.store_predictions("u1", encode([{"name": "aa"}]))
    assert second.get_pattern(pattern_hash(FREQ_TEST)) is None
    assert second.pattern_count() == 0
    assert second.symbol_stats(["freq"]) == {}
    assert second.totals() == Totals()
    assert second.find_predictions("u1") is None
    second.clear()
    assert first.pattern_count() == 1


def test_persistent_only_for_stores_outliving_the_process(kb: KnowledgeBase, storage: str) -> None:
    assert kb.persistent is (storage == "mongodb")


@pytest.mark.mongo
@pytest.mark.parametrize("storage", ["mongodb"])
def test_same_kb_id_shares_the_knowledge(make_kb: MakeKb) -> None:
    # Only a persistent store can share: memory stores belong to one process.
    kb_id = new_kb_id()
    first = make_kb(kb_id)
    learn(first, FREQ_TEST)
    second = make_kb(kb_id)
    assert learn(second, FREQ_TEST) is False
    record = first.get_pattern(pattern_hash(FREQ_TEST))
    assert record is not None
    assert record.frequency == 2
    assert second.totals().total_pattern_frequencies == 2
