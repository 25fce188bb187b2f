"""The index is exact: indexed and exhaustive matching give identical predictions."""

from hypothesis import given, settings
from hypothesis import strategies as st

from processor_image.engine.index import PatternIndex
from processor_image.engine.naming import pattern_hash
from processor_image.engine.predictions import predict
from processor_image.storage.memory import MemoryKnowledgeBase

symbols = st.sampled_from([f"s{i}" for i in range(12)])
events = st.lists(symbols, min_size=1, max_size=3)
patterns = st.lists(events, min_size=1, max_size=6).filter(lambda p: sum(map(len, p)) >= 2)


@settings(max_examples=300, deadline=None)
@given(
    knowledge=st.lists(patterns, min_size=0, max_size=25),
    state=st.lists(symbols, min_size=2, max_size=12),
    threshold=st.sampled_from([-0.2, 0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.2]),
    max_predictions=st.integers(min_value=0, max_value=30),
)
def test_indexed_predictions_equal_exhaustive(
    knowledge: list[list[list[str]]], state: list[str], threshold: float, max_predictions: int
) -> None:
    kb = MemoryKnowledgeBase()
    index = PatternIndex()
    for pattern in knowledge:
        name = pattern_hash(pattern)
        kb.learn(name, pattern, None, 5)
        index.add(name, pattern)
    args = {"recall_threshold": threshold, "max_predictions": max_predictions}
    assert predict(state, index, kb, **args) == predict(state, index, kb, exhaustive=True, **args)  # type: ignore[arg-type]


def test_index_skips_patterns_that_cannot_reach_the_threshold() -> None:
    index = PatternIndex()
    index.add("near", [["a"], ["b"]])
    index.add("far", [["a"], *([f"x{i}"] for i in range(40))])
    index.add("unrelated", [["q"], ["r"]])
    assert [(p.name, bound) for p, bound in index.candidates(["a", "b"], 0.1)] == [("near", 2)]
    assert {p.name for p, _ in index.candidates(["a", "b"], 0.0)} == {"near", "far", "unrelated"}
